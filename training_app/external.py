"""External trainers: a command the admin configures, run as a subprocess with a JSON contract (no Django here).

The contract (also in the README, "External trainers"):

- AudioML makes a work folder with ``data/`` (the job's snapshot exported in the trainer's declared layout:
  ``ljspeech`` = ``wavs/<id>.wav`` + ``metadata.csv`` lines ``id|transcript|transcript``; ``labels`` =
  ``<label>/<id>.wav`` + ``manifest.csv`` with file,label,transcript,score,speaker), an empty ``output/`` and
  ``config.json`` (contract_version, task, layout, data_dir, output_dir, sample_rate, clips, settings,
  init_from). It runs ``command + [path of config.json]`` in the work folder, with ``AUDIOML_CONFIG`` set too.
- The trainer prints JSON lines on stdout: ``{"epoch": 3, "step": 120, "loss": 0.41, "val_loss": 0.52,
  "progress": 0.3, "message": "..."}`` (every key optional). Each becomes the job's progress (``progress`` in
  [0, 1]), a point on its curves (a line with ``epoch``) and a log line (``message``). Other stdout lines and
  stderr go to the job log as they are.
- It writes its artifacts and ``metrics.json`` (a JSON object) into ``output/`` and exits 0. AudioML adds
  ``config.json`` (its own: task, trainer, layout, the trainer's own config.json under "trainer_config") and
  ``snapshot.json``; every file becomes part of the registered version, with its SHA-256.
- Cancelling the job sends SIGTERM (then SIGKILL after ``TERM_GRACE_SECONDS``); so does a run longer than the
  trainer's ``timeout`` or silent (no output line) for ``silence_timeout`` seconds. A non-zero exit fails the
  job with the last lines it printed.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONTRACT_VERSION = 1
LAYOUTS = ("ljspeech", "labels")
TERM_GRACE_SECONDS = 10.0
LAST_LINES = 20
POLL_SECONDS = 0.2
RESERVED_OUTPUTS = ("config.json", "snapshot.json")


class ExternalTrainerError(RuntimeError):
    """The trainer broke the contract or failed; the message says how (with its last lines)."""


class ExternalTrainerCancelled(Exception):
    pass


@dataclass(frozen=True)
class TrainerSpec:
    """One configured trainer (settings.EXTERNAL_TRAINERS[name])."""

    name: str
    command: tuple[str, ...]
    layout: str = "ljspeech"
    tasks: tuple[str, ...] = ("synthesis",)
    timeout: float = 6 * 3600.0
    silence_timeout: float = 600.0

    @classmethod
    def from_setting(cls, name: str, value: Any) -> TrainerSpec:
        if not isinstance(value, dict) or not value.get("command"):
            raise ValueError(f"external trainer {name!r}: needs a \"command\" (a list of arguments)")
        command = value["command"]
        if isinstance(command, str) or not all(isinstance(part, str) for part in command):
            raise ValueError(f"external trainer {name!r}: \"command\" must be a list of strings")
        layout = value.get("layout", "ljspeech")
        if layout not in LAYOUTS:
            raise ValueError(f"external trainer {name!r}: layout {layout!r}; use one of {', '.join(LAYOUTS)}")
        tasks = value.get("tasks", ["synthesis"])
        unknown = set(value) - {"command", "layout", "tasks", "timeout", "silence_timeout"}
        if unknown:
            raise ValueError(f"external trainer {name!r}: unknown keys {', '.join(sorted(unknown))}")
        return cls(name, tuple(command), layout, tuple(tasks), float(value.get("timeout", 6 * 3600)),
                   float(value.get("silence_timeout", 600)))


@dataclass(frozen=True)
class ExportedClip:
    id: str | int
    path: Path | str
    label: str = ""
    transcript: str = ""
    score: float | None = None
    speaker: str = ""


@dataclass
class ExternalResult:
    metrics: dict[str, Any]
    files: list[str]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def export_dataset(clips: Sequence[ExportedClip], folder: Path, layout: str) -> int:
    """The clips in the layout a trainer reads; returns how many were written."""
    folder.mkdir(parents=True)
    if layout == "ljspeech":
        (folder / "wavs").mkdir()
        with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
            for clip in clips:
                name = f"clip{clip.id}"
                _link_or_copy(Path(clip.path), folder / "wavs" / f"{name}.wav")
                text = " ".join(clip.transcript.replace("|", " ").split())
                handle.write(f"{name}|{text}|{text}\n")
        return len(clips)
    with open(folder / "manifest.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "transcript", "score", "speaker"])
        for clip in clips:
            label = clip.label or "unlabelled"
            target = folder / label / f"clip{clip.id}.wav"
            target.parent.mkdir(exist_ok=True)
            _link_or_copy(Path(clip.path), target)
            writer.writerow([target.relative_to(folder).as_posix(), clip.label, clip.transcript,
                             "" if clip.score is None else clip.score, clip.speaker])
    return len(clips)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def run_external_trainer(
    spec: TrainerSpec, task: str, clips: Sequence[ExportedClip], settings: dict[str, Any], sample_rate: int,
    out_dir: Path, on_progress: Callable[[float, dict[str, Any] | None], None], on_log: Callable[[str, str], None],
    should_stop: Callable[[], bool], snapshot: dict[str, Any] | None = None, init_from: Path | None = None,
    work_root: Path | None = None, device: str = "cpu",
) -> ExternalResult:
    """Run the trainer on the clips and move its output, completed by AudioML's config.json and snapshot.json,
    into ``out_dir`` (all or nothing). Raises ExternalTrainerError or ExternalTrainerCancelled."""
    started = time.monotonic()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExternalTrainerError(f"{out_dir} already exists and is not empty")
    work = Path(tempfile.mkdtemp(prefix=f"external-{spec.name}-", dir=work_root))
    try:
        data_dir, output_dir = work / "data", work / "output"
        n_clips = export_dataset(clips, data_dir, spec.layout)
        output_dir.mkdir()
        config_path = work / "config.json"
        config_path.write_text(json.dumps({
            "contract_version": CONTRACT_VERSION, "task": task, "trainer": spec.name, "layout": spec.layout,
            "data_dir": str(data_dir), "output_dir": str(output_dir), "sample_rate": sample_rate, "clips": n_clips,
            "settings": settings, "init_from": str(init_from) if init_from else None,
            "device": "cpu" if device == "cpu" else "cuda",
        }, indent=2))
        on_log("info", f"external trainer {spec.name}: {n_clips} clips exported ({spec.layout}); running "
                       f"{' '.join(spec.command)}")
        history = _run(spec, config_path, work, on_progress, on_log, should_stop, device_env(device))
        metrics = _read_metrics(output_dir)
        _complete_output(output_dir, spec, task, settings, sample_rate, snapshot)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if out_dir.exists():
            out_dir.rmdir()
        shutil.move(str(output_dir), str(out_dir))
        files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
        return ExternalResult(metrics, files, history, time.monotonic() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def device_env(device: str) -> dict[str, str]:
    """The trainer sees only the GPU its job claimed (as its ``cuda``), or none when the job runs on the CPU."""
    if device == "cpu":
        return {"CUDA_VISIBLE_DEVICES": ""}
    return {"CUDA_VISIBLE_DEVICES": device.split(":", 1)[1]} if ":" in device else {}


def _run(spec: TrainerSpec, config_path: Path, work: Path, on_progress, on_log, should_stop,
         extra_env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    env = {**os.environ, **(extra_env or {}), "AUDIOML_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([*spec.command, str(config_path)], cwd=work, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    readers = [threading.Thread(target=_pump, args=(stream, name, lines), daemon=True)
               for stream, name in ((process.stdout, "stdout"), (process.stderr, "stderr"))]
    for reader in readers:
        reader.start()
    last_lines: deque[str] = deque(maxlen=LAST_LINES)
    history: list[dict[str, Any]] = []
    started = last_heard = time.monotonic()
    open_streams = 2
    try:
        while open_streams or process.poll() is None:
            try:
                stream, line = lines.get(timeout=POLL_SECONDS)
            except queue.Empty:
                stream, line = "", None
            now = time.monotonic()
            if stream and line is None:
                open_streams -= 1
            elif line is not None:
                last_heard = now
                last_lines.append(line)
                _handle_line(stream, line, history, on_progress, on_log)
            if should_stop():
                _terminate(process)
                raise ExternalTrainerCancelled("cancelled: the trainer was sent SIGTERM")
            if now - started > spec.timeout:
                _terminate(process)
                raise ExternalTrainerError(f"trainer {spec.name} ran longer than its timeout ({spec.timeout:g} s) "
                                           "and was stopped" + _tail(last_lines))
            if now - last_heard > spec.silence_timeout:
                _terminate(process)
                raise ExternalTrainerError(f"trainer {spec.name} printed nothing for {spec.silence_timeout:g} s "
                                           "and was stopped" + _tail(last_lines))
    except BaseException:
        if process.poll() is None:
            _terminate(process)
        raise
    if process.returncode != 0:
        raise ExternalTrainerError(f"trainer {spec.name} exited with status {process.returncode}" + _tail(last_lines))
    return history


def _pump(stream, name: str, lines: queue.Queue) -> None:
    for line in stream:
        lines.put((name, line.rstrip("\n")[:2000]))
    lines.put((name, None))


def _handle_line(stream: str, line: str, history: list, on_progress, on_log) -> None:
    if stream == "stdout" and line.startswith("{"):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if isinstance(event, dict):
            record = None
            if isinstance(event.get("epoch"), int):
                record = {key: value for key, value in event.items()
                          if key in ("epoch", "step") or (isinstance(value, (int, float)) and key != "progress")}
                if "loss" in record and "train_loss" not in record:
                    record["train_loss"] = record.pop("loss")
                history.append(record)
            progress = event.get("progress")
            fraction = float(progress) if isinstance(progress, (int, float)) and 0 <= progress <= 1 else None
            if fraction is not None or record is not None:
                on_progress(fraction if fraction is not None else -1.0, record)
            if isinstance(event.get("message"), str):
                on_log("info", f"{event['message']}")
            return
    on_log("warning" if stream == "stderr" else "info", f"[{stream}] {line}")


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM to the trainer's process group, SIGKILL when it has not gone after the grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(TERM_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _tail(lines: deque) -> str:
    return ("; last lines:\n" + "\n".join(lines)) if lines else "; it printed nothing"


def _read_metrics(output_dir: Path) -> dict[str, Any]:
    path = output_dir / "metrics.json"
    if not path.is_file():
        raise ExternalTrainerError("the trainer exited 0 but wrote no metrics.json in its output folder")
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExternalTrainerError(f"the trainer's metrics.json is not valid JSON: {error}") from None
    if not isinstance(metrics, dict):
        raise ExternalTrainerError("the trainer's metrics.json must hold a JSON object")
    if not any(p.is_file() and p.name != "metrics.json" for p in output_dir.rglob("*")):
        raise ExternalTrainerError("the trainer wrote no artifacts besides metrics.json")
    return metrics


def _complete_output(output_dir: Path, spec: TrainerSpec, task: str, settings: dict[str, Any], sample_rate: int,
                     snapshot: dict[str, Any] | None) -> None:
    own = output_dir / "config.json"
    trainer_config = None
    if own.is_file():
        try:
            trainer_config = json.loads(own.read_text())
        except json.JSONDecodeError:
            trainer_config = own.read_text()[:10000]
    own.write_text(json.dumps({
        "format_version": 1, "task": task, "labels": [], "trainer": spec.name, "layout": spec.layout,
        "command": list(spec.command), "sample_rate": sample_rate, "train_config": settings,
        "trainer_config": trainer_config,
    }, indent=2, sort_keys=True))
    (output_dir / "snapshot.json").write_text(json.dumps(snapshot or {}, indent=2, sort_keys=True))
