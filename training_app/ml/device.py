"""Which device a training job runs on, and mixed precision on it. Pure PyTorch, no Django.

``TRAINING_DEVICE`` is ``auto`` (a free GPU when the machine has one, else the CPU), ``cpu``, ``cuda`` (a free
GPU; the job fails when the machine has none) or ``cuda:N`` (that GPU). Several training workers on one machine
each take a GPU of their own: a worker claims one by holding an exclusive ``flock`` on
``<lock_dir>/cuda-N.lock`` for as long as its job runs. The kernel drops the lock when the process ends, however
it ends (a SIGKILLed worker frees its GPU at once), and workers are recycled after every job. When every GPU is
taken, the job shares the one with the lowest number of the worker's pid modulo the count, and says so.

Mixed precision: on CUDA the convolutional networks run under ``torch.autocast`` (bf16 where the GPU has it,
else fp16 with a gradient scaler); the mel front end, the losses (cross-entropy, BCE, MSE, CTC) and the
evaluation stay in fp32. The CPU always trains in fp32.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import torch

DEVICE_SETTING = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


class DeviceUnavailable(RuntimeError):
    """The configured device does not exist on this machine (``cuda`` without a GPU, ``cuda:3`` of 2)."""


@dataclass
class DeviceClaim:
    """The device a job runs on, its name ("NVIDIA H200", "CPU") and the lock that keeps it the job's own."""

    device: torch.device
    name: str
    note: str = ""  # why this device: "shared: every GPU is busy", "no GPU on this machine"
    lock: IO | None = field(default=None, repr=False)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()  # closing the file drops the flock
            self.lock = None

    def __enter__(self) -> DeviceClaim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def check_setting(value: str) -> str:
    if not DEVICE_SETTING.match(value):
        raise ValueError(f"{value!r}: use auto, cpu, cuda or cuda:N")
    return value


def cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def claim_device(setting: str, lock_dir: Path, device_count: int | None = None,
                 gpu_name: Callable[[int], str] | None = None) -> DeviceClaim:
    """The device for one job on this machine, claimed until ``release()``.

    ``device_count`` and ``gpu_name`` default to what CUDA reports; tests pass their own to exercise the
    assignment on a machine without GPUs.
    """
    check_setting(setting)
    count = cuda_count() if device_count is None else device_count
    name_of = gpu_name or torch.cuda.get_device_name
    if setting == "cpu" or (setting == "auto" and count == 0):
        return DeviceClaim(torch.device("cpu"), cpu_name(), "" if setting == "cpu" else "no GPU on this machine")
    if count == 0:
        raise DeviceUnavailable(f"TRAINING_DEVICE={setting}, but this machine has no CUDA GPU "
                                "(use auto to fall back to the CPU)")
    lock_dir.mkdir(parents=True, exist_ok=True)
    if setting.startswith("cuda:"):
        index = int(setting.split(":")[1])
        if index >= count:
            raise DeviceUnavailable(f"TRAINING_DEVICE={setting}, but this machine has {count} GPU(s)")
        lock = _try_lock(lock_dir, index)
        note = "" if lock is not None else f"cuda:{index} is also used by another job (TRAINING_DEVICE={setting})"
        return DeviceClaim(torch.device("cuda", index), name_of(index), note, lock)
    for index in range(count):
        lock = _try_lock(lock_dir, index)
        if lock is not None:
            return DeviceClaim(torch.device("cuda", index), name_of(index), "", lock)
    index = os.getpid() % count
    return DeviceClaim(torch.device("cuda", index), name_of(index),
                       f"shared: all {count} GPU(s) of this machine are busy with other jobs")


def _try_lock(lock_dir: Path, index: int) -> IO | None:
    handle = open(lock_dir / f"cuda-{index}.lock", "a+")  # noqa: SIM115 - kept open while the claim lasts
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.close()
        if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
            return None
        raise
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def cpu_name() -> str:
    """The processor's model name from /proc/cpuinfo (Linux), else "CPU"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()[:120]
    except OSError:
        pass
    return "CPU"


def resolve_inference_device(setting: str) -> torch.device:
    """INFERENCE_DEVICE for a process that serves predictions: shared, never claimed (a forward pass is short)."""
    check_setting(setting)
    if setting == "cpu" or (setting == "auto" and cuda_count() == 0):
        return torch.device("cpu")
    count = cuda_count()
    index = int(setting.split(":")[1]) if ":" in setting else 0
    if index >= count:
        raise DeviceUnavailable(f"INFERENCE_DEVICE={setting}, but this machine has {count} CUDA GPU(s)")
    return torch.device("cuda", index)


# Mixed precision ------------------------------------------------------------------------------------------------

def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision a network runs in on this device: bf16 where the GPU has it, fp16 on older GPUs,
    None (fp32) on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(device: torch.device) -> str:
    dtype = amp_dtype(device)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """The network's forward pass in mixed precision on CUDA; a no-op on the CPU. Compute losses outside it, on
    ``.float()`` outputs."""
    dtype = amp_dtype(device)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type="cuda", dtype=dtype):
        yield


class GradScaler:
    """torch.amp.GradScaler where fp16 needs one (bf16 and fp32 do not): ``scaler.step(loss, optimizer)`` does
    backward, optional gradient clipping (on unscaled gradients) and the optimizer step either way."""

    def __init__(self, device: torch.device) -> None:
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype(device) == torch.float16 else None

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip_norm: float | None = None) -> None:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        if self.scaler is None:
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        if clip_norm is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
        self.scaler.step(optimizer)
        self.scaler.update()
