"""Atomic writing of a trained model's artifacts: weights, torch.export program, ONNX, JSON metadata.

Everything is written into a temporary sibling folder and renamed into place at the end, so the job's
folder either holds a complete, verified set of artifacts or does not exist.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
import torchaudio
from torch import nn
from torch.export import Dim

from . import ML_VERSION
from .artifacts import (
    ARTIFACT_FILES, CONFIG_FILE, METRICS_FILE, ONNX_FILE, SNAPSHOT_FILE, TORCH_EXPORT_FILE, WEIGHTS_FILE, finite_json,
)
from .config import FeatureConfig
from .features import LogMelFrontend
from .model import ExportedModel, keyword_network

INPUT_NAME = "waveform"
OUTPUT_NAME = "probabilities"
MAX_BATCH = 4096
EXPORT_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    pass


class ExportCancelled(Exception):
    pass


def code_version() -> str:
    """The ML package version plus a digest of its source, so artifacts name the exact code that made them,
    then where that code came from: ``git <commit>`` when it runs from a git checkout (or AUDIOML_GIT_COMMIT
    names one, for images built without .git), else ``audioml <package version>``.
    E.g. ``1.0+3fa2b1c0d9e8 git 1a2b3c4d5e6f``."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for source in sorted(package.rglob("*.py")):
        digest.update(str(source.relative_to(package)).encode())
        digest.update(source.read_bytes())
    return f"{ML_VERSION}+{digest.hexdigest()[:12]} {code_origin()}"


@functools.lru_cache(maxsize=1)
def code_origin() -> str:
    commit = os.environ.get("AUDIOML_GIT_COMMIT", "").strip() or _git_commit(Path(__file__).resolve().parent)
    if commit:
        return f"git {commit[:12]}"
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - always there on 3.11
        return "audioml unknown"
    try:
        return f"audioml {version('audioml')}"
    except PackageNotFoundError:
        return "audioml unknown"


def _git_commit(folder: Path) -> str:
    import subprocess

    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and len(commit) >= 12 else ""


def write_artifacts(
    out_dir: Path,
    model: nn.Module,
    config: dict[str, Any],
    metrics: dict[str, Any],
    snapshot: dict[str, Any] | None,
    sample: torch.Tensor,
    should_stop: Callable[[], bool] = lambda: False,
    dynamic_shapes: dict[str, dict[int, Dim]] | None = None,
    checks: Sequence[torch.Tensor] = (),
) -> list[str]:
    """Write every artifact into ``out_dir`` atomically and return the file names.

    ``sample`` is a (batch >= 2, clip_samples) float32 batch used to trace the export and to verify that
    the exported program reproduces the eager model. Raises ``ExportCancelled`` when ``should_stop``
    turns true before the final rename.

    ``dynamic_shapes`` replaces the default (a dynamic batch only), e.g. a task taking waveforms of any length
    adds ``1: 160 * Dim("hops", min=...)``; ``checks`` are further inputs (another length, say) on which both
    exported files must reproduce the eager model. The input and output names come from ``config["input"]`` and
    ``config["output"]`` ("waveform" and "probabilities" unless a task says otherwise; token ids in, say, keep
    their integer dtype).
    """
    out_dir = Path(out_dir)
    ensure_free(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp_dir.chmod(0o755)  # mkdtemp makes it private; the final folder should read like any other
        model = model.to("cpu").eval()
        sample = sample.to("cpu", torch.float32) if sample.is_floating_point() else sample.to("cpu")
        torch.save(model.state_dict(), tmp_dir / WEIGHTS_FILE)
        _write_json(tmp_dir / METRICS_FILE, metrics)
        _write_json(tmp_dir / SNAPSHOT_FILE, snapshot if snapshot is not None else {})
        _write_json(tmp_dir / CONFIG_FILE, config)
        output_name = str(config.get("output", {}).get("name") or OUTPUT_NAME)
        input_name = str(config.get("input", {}).get("name") or INPUT_NAME)
        shapes = dynamic_shapes or _dynamic_shapes()
        _export_program(model, sample, tmp_dir / TORCH_EXPORT_FILE, shapes, checks)
        _export_onnx(model, sample, tmp_dir / ONNX_FILE, output_name, shapes, checks, input_name)
        unexpected = sorted(path.name for path in tmp_dir.iterdir() if path.name not in ARTIFACT_FILES)
        if unexpected:
            raise ExportError(f"export left unexpected files: {', '.join(unexpected)}")
        if should_stop():
            raise ExportCancelled()
        ensure_free(out_dir)
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return list(ARTIFACT_FILES)


def ensure_free(out_dir: Path) -> None:
    """Refuse to overwrite earlier artifacts: the target must be missing or an empty folder."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} already exists and is not an empty folder")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(finite_json(data), indent=2, sort_keys=True, allow_nan=False) + "\n")


def _dynamic_shapes() -> dict[str, dict[int, Dim]]:
    return {INPUT_NAME: {0: Dim("batch", min=1, max=MAX_BATCH)}}


def _export_program(
    model: nn.Module, sample: torch.Tensor, path: Path, shapes: dict, checks: Sequence[torch.Tensor] = ()
) -> None:
    program = torch.export.export(model, (sample,), dynamic_shapes=shapes)
    torch.export.save(program, path)
    reloaded = torch.export.load(path).module()
    with torch.no_grad():
        for batch in (sample, sample[:1], *checks):
            got = reloaded(batch)
            difference = (got - model(batch)).abs().max().item()
            if not difference <= EXPORT_TOLERANCE:
                raise ExportError(
                    f"{TORCH_EXPORT_FILE} differs from the trained model by {difference:.2e} "
                    f"(batch of {len(batch)}; tolerance {EXPORT_TOLERANCE:g})"
                )


def _export_onnx(
    model: nn.Module, sample: torch.Tensor, path: Path, output_name: str, shapes: dict,
    checks: Sequence[torch.Tensor] = (), input_name: str = INPUT_NAME,
) -> None:
    try:
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            dynamo=True,
            dynamic_shapes=shapes,
            input_names=[input_name],
            output_names=[output_name],
            external_data=False,
            verbose=False,
        )
        onnx.checker.check_model(str(path))
    except Exception as error:
        raise ExportError(f"ONNX export failed: {error}") from error
    for batch in (sample, *checks):
        _compare_onnx_runtime(model, batch, path, output_name, input_name)


def _compare_onnx_runtime(
    model: nn.Module, sample: torch.Tensor, path: Path, output_name: str, input_name: str = INPUT_NAME
) -> None:
    """Run the ONNX file when onnxruntime is installed (it is optional) and compare with the eager model."""
    try:
        import onnxruntime
    except ImportError:
        return
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([output_name], {input_name: sample.numpy()})[0]
    with torch.no_grad():
        difference = float((torch.from_numpy(got) - model(sample)).abs().max())
    if not difference <= EXPORT_TOLERANCE:
        raise ExportError(f"{ONNX_FILE} differs from the trained model by {difference:.2e} in onnxruntime")


def build_config(
    labels: list[str],
    task: str,
    features: FeatureConfig,
    train_config: dict[str, Any],
    architecture: dict[str, Any],
    prediction: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``prediction``: what the task's predictions need besides the model (a detection threshold, say)."""
    from .tasks import task_module

    output_name = task_module(task).OUTPUT_NAME
    output_shape = ["batch", len(labels)] if output_name == OUTPUT_NAME else ["batch"]
    return {
        "format_version": 1,
        "task": task,
        "labels": labels,
        "sample_rate": features.sample_rate,
        "clip_samples": features.clip_samples,
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": ["batch", features.clip_samples],
            "preprocessing": "mono, resampled to sample_rate, values in [-1, 1], "
            "zero-padded or cropped around the centre to clip_samples",
        },
        "output": {"name": output_name, "dtype": "float32", "shape": output_shape},
        "prediction": prediction or {},
        "features": {**features.to_dict(), "cache_key": features.cache_key()},
        "model": architecture,
        "train_config": train_config,
        "files": {
            "weights": WEIGHTS_FILE,
            "torch_export": TORCH_EXPORT_FILE,
            "onnx": ONNX_FILE,
            "metrics": METRICS_FILE,
            "snapshot": SNAPSHOT_FILE,
        },
        "torch_version": torch.__version__,
        "torchaudio_version": torchaudio.__version__,
        "code_version": code_version(),
    }


def load_eager_model(artifact_dir: Path) -> tuple[ExportedModel, dict[str, Any]]:
    """Rebuild the eager model from ``weights.pt`` and ``config.json`` (the .pt2 file needs no code at all)."""
    artifact_dir = Path(artifact_dir)
    config = json.loads((artifact_dir / CONFIG_FILE).read_text())
    feature_values = {key: value for key, value in config["features"].items() if key != "cache_key"}
    architecture = config["model"]
    from .tasks import task_module

    task = task_module(config.get("task", "classification"))
    if architecture.get("architecture") == "speech_embedding":
        from .embedding_detector import eager_model

        model = eager_model(architecture)
        model.load_state_dict(torch.load(artifact_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        return model.eval(), config
    network = keyword_network(task.n_outputs(config["labels"]), feature_values["n_mels"],
                              architecture.get("architecture", "conv2d"), architecture["channels"],
                              architecture["dropout"], architecture.get("convs_per_block", 1),
                              isinstance(task.output_layer(), torch.nn.Softmax))
    model = ExportedModel(LogMelFrontend(FeatureConfig(**feature_values)), network, task.output_layer())
    model.load_state_dict(torch.load(artifact_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval(), config
