"""Which device a training job gets: the setting, the CPU fallback, and one GPU per job on a machine with several.

The GPU assignment runs here without CUDA: claim_device() takes the machine's GPU count (and names) as arguments.
Training on a real GPU is in tests/gpu/ (`pytest -m gpu`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training_app.ml.device import (
    DeviceUnavailable,
    GradScaler,
    amp_dtype,
    autocast,
    check_setting,
    claim_device,
    precision_name,
)

ROOT = Path(__file__).resolve().parents[2]


def fake_name(index: int) -> str:
    return f"Test GPU {index}"


def claim(setting: str, lock_dir: Path, count: int):
    return claim_device(setting, lock_dir, device_count=count, gpu_name=fake_name)


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_settings_that_are_accepted(value):
    assert check_setting(value) == value


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "CPU", "mps", " cuda"])
def test_device_settings_that_are_refused(value):
    with pytest.raises(ValueError, match="use auto, cpu, cuda or cuda:N"):
        check_setting(value)


def test_auto_falls_back_to_the_cpu_on_a_machine_without_gpus(tmp_path):
    with claim("auto", tmp_path, 0) as chosen:
        assert chosen.device == torch.device("cpu")
        assert chosen.note == "no GPU on this machine"
        assert chosen.name  # the processor's model name, or "CPU"
    assert not (tmp_path / "cuda-0.lock").exists()


def test_cpu_is_the_cpu_even_with_gpus(tmp_path):
    with claim("cpu", tmp_path, 4) as chosen:
        assert chosen.device.type == "cpu" and chosen.note == ""


@pytest.mark.parametrize("setting, count, message", [
    ("cuda", 0, "TRAINING_DEVICE=cuda, but this machine has no CUDA GPU"),
    ("cuda:1", 0, "no CUDA GPU"),
    ("cuda:2", 2, "TRAINING_DEVICE=cuda:2, but this machine has 2 GPU(s)"),
])
def test_a_gpu_the_machine_does_not_have_is_an_error(tmp_path, setting, count, message):
    with pytest.raises(DeviceUnavailable) as caught:
        claim(setting, tmp_path, count)
    assert message in str(caught.value)


def test_jobs_on_one_machine_each_get_their_own_gpu_and_share_only_when_all_are_busy(tmp_path):
    first, second, third = (claim("auto", tmp_path, 3) for _ in range(3))
    assert [str(c.device) for c in (first, second, third)] == ["cuda:0", "cuda:1", "cuda:2"]
    assert [c.name for c in (first, second, third)] == ["Test GPU 0", "Test GPU 1", "Test GPU 2"]
    assert all(c.note == "" for c in (first, second, third))
    fourth = claim("auto", tmp_path, 3)
    assert fourth.device.type == "cuda" and fourth.note == "shared: all 3 GPU(s) of this machine are busy with other jobs"
    second.release()
    fifth = claim("cuda", tmp_path, 3)  # `cuda` claims a free GPU like auto, but never falls back to the CPU
    assert (str(fifth.device), fifth.note) == ("cuda:1", "")
    for held in (first, third, fourth, fifth):
        held.release()


def test_a_named_gpu_is_used_even_when_another_job_holds_it_and_says_so(tmp_path):
    with claim("cuda:1", tmp_path, 2) as holder, claim("cuda:1", tmp_path, 2) as again:
        assert str(holder.device) == str(again.device) == "cuda:1"
        assert holder.note == ""
        assert again.note == "cuda:1 is also used by another job (TRAINING_DEVICE=cuda:1)"


HOLDER = """
import sys, time
from pathlib import Path
from training_app.ml.device import claim_device
claimed = claim_device("auto", Path(sys.argv[1]), device_count=2, gpu_name=str)
print(claimed.device, flush=True)
time.sleep(300)
"""


def test_a_gpu_held_by_another_worker_process_is_skipped_and_freed_when_that_worker_dies(tmp_path):
    worker = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert worker.stdout.readline().strip() == "cuda:0"
        with claim("auto", tmp_path, 2) as mine:
            assert str(mine.device) == "cuda:1"
        worker.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock with the process
        worker.wait(timeout=10)
        with claim("auto", tmp_path, 2) as after:
            assert str(after.device) == "cuda:0"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)


def test_the_cpu_trains_in_full_precision():
    cpu = torch.device("cpu")
    assert amp_dtype(cpu) is None and precision_name(cpu) == "fp32"
    layer = torch.nn.Conv1d(1, 2, 3)
    with autocast(cpu):
        assert layer(torch.randn(1, 1, 8)).dtype == torch.float32
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.weight.detach().clone()
    scaler = GradScaler(cpu)
    assert scaler.scaler is None
    scaler.step(layer(torch.randn(1, 1, 8)).square().mean(), optimizer, clip_norm=1.0)
    assert not torch.equal(before, layer.weight)
