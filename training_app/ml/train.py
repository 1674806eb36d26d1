"""The training entry point: split, features, training loop, evaluation, baseline and export."""

from __future__ import annotations

import copy
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .augment import Augmenter, gaussian_noise_powers, stack_frames
from .baseline import BASELINE_DESCRIPTION, LogisticBaseline, clip_statistics
from .config import TrainConfig
from .data import MIN_CLIPS_PER_LABEL, ClipRecord, NotTrainable, check_trainable, is_noise_label
from .export import ExportCancelled, build_config, ensure_free, write_artifacts
from .features import ClipReadError, FeatureCache, LogMelFrontend, load_features
from .metrics import classification_metrics, positive_label_index, rates_at_threshold, roc_auc, threshold_for_far
from .model import ExportedClassifier, KeywordCNN
from .split import SPLITS, Split, split_clips

__all__ = [
    "MIN_CLIPS_PER_LABEL",
    "ClipReadError",
    "ClipRecord",
    "NotTrainable",
    "Progress",
    "TrainResult",
    "TrainingCancelled",
    "check_trainable",
    "train",
]

PHASES = ("preparing", "features", "training", "evaluating", "exporting")
# Share of the progress bar each phase ends at.
_PHASE_END = {"preparing": 2.0, "features": 10.0, "training": 90.0, "evaluating": 93.0, "exporting": 100.0}
_PROGRESS_INTERVAL_SECONDS = 1.0
_EXPORT_SECONDS_ESTIMATE = 8.0
_EVAL_BATCH = 256


class TrainingCancelled(Exception):
    """``should_stop()`` turned true; nothing was written to the output folder."""


@dataclass(frozen=True)
class Progress:
    phase: str
    percent: float
    eta_seconds: float | None
    epoch: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrainResult:
    labels: list[str]
    metrics: dict[str, Any]
    artifacts: list[str]
    out_dir: Path
    best_epoch: int
    export_seconds: float
    total_seconds: float


class _Reporter:
    """Throttles progress callbacks: epoch ends and phase changes always go out, the rest at most once a second."""

    def __init__(self, on_progress: Callable[[Progress], None]) -> None:
        self.on_progress = on_progress
        self.last_sent = 0.0
        self.phase = ""

    def __call__(
        self, phase: str, fraction: float, eta: float | None, epoch: dict[str, Any] | None = None
    ) -> None:
        now = time.monotonic()
        routine = phase == self.phase and epoch is None and fraction < 1.0
        if routine and now - self.last_sent < _PROGRESS_INTERVAL_SECONDS:
            return
        start = _PHASE_END[PHASES[PHASES.index(phase) - 1]] if phase != PHASES[0] else 0.0
        percent = start + (_PHASE_END[phase] - start) * min(max(fraction, 0.0), 1.0)
        self.phase, self.last_sent = phase, now
        self.on_progress(Progress(phase, round(percent, 2), None if eta is None else max(0.0, eta), epoch))


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1



def one_cycle(optimizer: torch.optim.Optimizer, max_lr: float, total_steps: int):
    """OneCycleLR warming up over the first quarter. OneCycleLR divides by (pct_start * total_steps - 1), so a
    tiny run (4 steps) would crash with 0.25: nudge pct_start off that point."""
    pct_start = 0.25 if abs(0.25 * total_steps - 1) > 1e-9 else 0.3
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start)

def train(
    cfg: TrainConfig,
    clips: Sequence[ClipRecord],
    out_dir: Path,
    cache_dir: Path,
    on_progress: Callable[[Progress], None],
    should_stop: Callable[[], bool],
    snapshot: dict[str, Any] | None = None,
    on_log: Callable[[str, str], None] | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> TrainResult:
    """Train a classifier on ``clips`` and write its artifacts atomically into ``out_dir``.

    Raises ``NotTrainable`` before any work when the data cannot train a model, and ``TrainingCancelled``
    (leaving ``out_dir`` untouched) as soon as ``should_stop()`` is true; it is polled every batch.
    ``on_log(level, message)`` receives "info" and "warning" lines.
    """
    problems = check_trainable(clips, cfg)
    if problems:
        raise NotTrainable(problems)
    out_dir = Path(out_dir)
    ensure_free(out_dir)
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    chosen_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if chosen_device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        torch.set_num_threads(threads or default_threads())
        torch.use_deterministic_algorithms(True, warn_only=True)
        run = _Run(cfg, list(clips), out_dir, Path(cache_dir), on_progress, should_stop, snapshot, on_log,
                   chosen_device)
        return run.execute()
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)


class _Run:
    def __init__(
        self,
        cfg: TrainConfig,
        clips: list[ClipRecord],
        out_dir: Path,
        cache_dir: Path,
        on_progress: Callable[[Progress], None],
        should_stop: Callable[[], bool],
        snapshot: dict[str, Any] | None,
        on_log: Callable[[str, str], None] | None,
        device: torch.device,
    ) -> None:
        self.cfg = cfg
        self.clips = clips
        self.out_dir = out_dir
        self.cache_dir = cache_dir
        self.report = _Reporter(on_progress)
        self.should_stop = should_stop
        self.snapshot = snapshot
        self.on_log = on_log
        self.device = device
        self.features = cfg.features()
        self.labels = sorted({clip.label for clip in clips})
        self.targets = torch.tensor([self.labels.index(clip.label) for clip in clips])
        self.timings: dict[str, float] = {}

    def log(self, level: str, message: str) -> None:
        if self.on_log is not None:
            self.on_log(level, message)

    def check_stop(self) -> None:
        if self.should_stop():
            raise TrainingCancelled("training was cancelled")

    def execute(self) -> TrainResult:
        started = time.monotonic()
        _seed_everything(self.cfg.seed)
        self.report("preparing", 0.0, None)
        split = split_clips(
            self.clips, self.cfg.val_fraction, self.cfg.test_fraction, self.cfg.seed, self.cfg.holdout_speakers
        )
        self._log_split(split)
        split_summary = split.summary(self.clips)
        if not split.val:
            raise NotTrainable(["no clips are left for validation after splitting"])
        self.timings["preparing_seconds"] = time.monotonic() - started
        self.check_stop()

        mark = time.monotonic()
        frontend = LogMelFrontend(self.features)
        cache = FeatureCache(self.cache_dir, self.features)
        powers, hits, misses = load_features(
            self.clips, self.features, cache, frontend, self.should_stop,
            lambda done: self.report("features", done / len(self.clips), None),
        )
        self.check_stop()
        self.timings["features_seconds"] = time.monotonic() - mark
        self.log("info", f"features: {hits} clips from the cache, {misses} decoded "
                         f"({self.timings['features_seconds']:.1f} s)")

        mark = time.monotonic()
        frontend = frontend.to(self.device)
        network, history, best_epoch, stopped_early = self._fit(frontend, powers, split)
        self.timings["training_seconds"] = time.monotonic() - mark

        mark = time.monotonic()
        self.report("evaluating", 0.0, _EXPORT_SECONDS_ESTIMATE)
        metrics = self._evaluate(frontend, network, powers, split)
        metrics.update(
            split=split_summary,
            history=history,
            best_epoch=best_epoch,
            epochs_run=len(history),
            stopped_early=stopped_early,
            device=str(self.device),
            threads=torch.get_num_threads(),
            n_parameters=sum(parameter.numel() for parameter in network.parameters()),
            feature_cache={"hits": hits, "misses": misses},
            mean_epoch_seconds=float(np.mean([epoch["seconds"] for epoch in history])),
            training_seconds=self.timings["training_seconds"],
        )
        self.timings["evaluating_seconds"] = time.monotonic() - mark
        metrics["timings"] = dict(self.timings)
        self.check_stop()

        mark = time.monotonic()
        self.report("exporting", 0.0, _EXPORT_SECONDS_ESTIMATE)
        artifacts = self._export(frontend, network, metrics)
        export_seconds = time.monotonic() - mark
        self.report("exporting", 1.0, 0.0)
        total = time.monotonic() - started
        self.log("info", f"artifacts written to {self.out_dir} in {export_seconds:.1f} s; total {total:.1f} s")
        return TrainResult(self.labels, metrics, artifacts, self.out_dir, best_epoch, export_seconds, total)

    def _log_split(self, split: Split) -> None:
        self.log("info", f"split: {len(split.train)} train, {len(split.val)} validation, {len(split.test)} test clips"
                         + (" (grouped by speaker)" if split.grouped_by_speaker else ""))
        for note in split.notes:
            self.log("warning", note)

    def _fit(
        self, frontend: LogMelFrontend, powers: list[torch.Tensor], split: Split
    ) -> tuple[KeywordCNN, list[dict[str, Any]], int, bool]:
        cfg = self.cfg
        n_frames = self.features.n_frames
        train_powers = [powers[i] for i in split.train]
        train_targets = self.targets[split.train]
        generator = torch.Generator().manual_seed(cfg.seed)
        augment_generator = torch.Generator().manual_seed(cfg.seed + 1)
        augmenter = Augmenter(
            time_shift=cfg.time_shift,
            noise=cfg.noise,
            spec_augment=cfg.spec_augment,
            warp=cfg.warp,
            noise_powers=self._noise_sources(powers, split, augment_generator),
            generator=augment_generator,
        )
        with torch.no_grad():
            val_powers = stack_frames([powers[i] for i in split.val], n_frames, "center")
            val_inputs = frontend.normalize(val_powers.to(self.device))
        val_targets = self.targets[split.val].to(self.device)

        loss_fn = nn.CrossEntropyLoss(weight=self._class_weights(split).to(self.device))

        network = KeywordCNN(len(self.labels), cfg.channels, cfg.dropout).to(self.device)
        optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        steps_per_epoch = -(-len(train_powers) // cfg.batch_size)
        scheduler = one_cycle(optimizer, cfg.learning_rate, cfg.epochs * steps_per_epoch)

        history: list[dict[str, Any]] = []
        best_loss, best_epoch, best_state, stale = float("inf"), 0, None, 0
        stopped_early = False
        training_started = time.monotonic()
        for epoch in range(1, cfg.epochs + 1):
            epoch_started = time.monotonic()
            network.train()
            order = torch.randperm(len(train_powers), generator=generator).tolist()
            loss_sum = 0.0
            for step, start in enumerate(range(0, len(order), cfg.batch_size), start=1):
                self.check_stop()
                batch_indices = order[start : start + cfg.batch_size]
                batch = stack_frames([train_powers[i] for i in batch_indices], n_frames, "random", augment_generator)
                inputs = augmenter.log_mel(frontend.normalize(augmenter.power(batch.to(self.device))))
                targets = train_targets[batch_indices].to(self.device)
                loss = loss_fn(network(inputs), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(batch_indices)
                done = (epoch - 1 + step / steps_per_epoch) / cfg.epochs
                self.report("training", done, self._eta(training_started, done))

            val_loss, val_accuracy = _validate(network, val_inputs, val_targets, loss_fn)
            record = {
                "epoch": epoch,
                "train_loss": loss_sum / len(order),
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.monotonic() - epoch_started,
            }
            history.append(record)
            if val_loss < best_loss - 1e-4:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = copy.deepcopy(network.state_dict())
            else:
                stale += 1
            patience_over = cfg.early_stopping_patience > 0 and stale >= cfg.early_stopping_patience
            done = 1.0 if patience_over else epoch / cfg.epochs
            self.report("training", done, self._eta(training_started, done), epoch=record)
            if patience_over:
                stopped_early = True
                self.log("info", f"early stop after epoch {epoch}: validation loss last improved at epoch {best_epoch}")
                break
        if best_state is None:
            # Validation loss was never finite: keep the last weights rather than none.
            best_epoch = len(history)
            self.log("warning", "validation loss was never finite; keeping the weights of the last epoch")
        else:
            network.load_state_dict(best_state)
        self.log("info", f"best epoch {best_epoch} of {len(history)}: validation loss {best_loss:.4f}")
        return network.eval(), history, best_epoch, stopped_early

    def _class_weights(self, split: Split) -> torch.Tensor:
        """Inverse label frequency in the training split, so rare labels weigh as much as common ones."""
        counts = torch.bincount(self.targets[split.train], minlength=len(self.labels)).float()
        return torch.where(counts > 0, counts.sum() / (len(self.labels) * counts.clamp_min(1)), 1.0)

    def _noise_sources(
        self, powers: list[torch.Tensor], split: Split, generator: torch.Generator
    ) -> list[torch.Tensor]:
        if not self.cfg.noise:
            return []
        noise_clips = [powers[i] for i in split.train if is_noise_label(self.clips[i].label)]
        if noise_clips:
            self.log("info", f"noise augmentation mixes {len(noise_clips)} training clips of the noise label")
            return noise_clips
        self.log("info", "noise augmentation uses gaussian noise (no noise label in the data)")
        return gaussian_noise_powers(LogMelFrontend(self.features), self.features, 8, generator)

    def _eta(self, started: float, done: float) -> float | None:
        if done <= 0:
            return None
        elapsed = time.monotonic() - started
        return elapsed / done * (1 - done) + _EXPORT_SECONDS_ESTIMATE

    def _evaluate(
        self, frontend: LogMelFrontend, network: KeywordCNN, powers: list[torch.Tensor], split: Split
    ) -> dict[str, Any]:
        n_frames = self.features.n_frames

        def log_mels(indices: list[int]) -> torch.Tensor:
            with torch.no_grad():
                stacked = stack_frames([powers[i] for i in indices], n_frames, "center").to(self.device)
                return frontend.log_mel(stacked).cpu()

        evaluated_on = "test" if split.test else "val"
        split_log_mels = {name: log_mels(split.indices(name)) for name in SPLITS if split.indices(name)}
        probabilities = {
            name: _predict(network, split_log_mels[name].to(self.device))
            for name in ("val", "test") if name in split_log_mels
        }
        truths = {name: self.targets[split.indices(name)].numpy() for name in probabilities}
        results: dict[str, Any] = {
            "task": self.cfg.task,
            "labels": self.labels,
            "evaluated_on": evaluated_on,
            "val": classification_metrics(truths["val"], probabilities["val"], self.labels),
            "test": classification_metrics(truths["test"], probabilities["test"], self.labels)
            if "test" in probabilities else None,
            "seed": self.cfg.seed,
        }
        results["accuracy"] = results[evaluated_on]["accuracy"]
        results["macro_f1"] = results[evaluated_on]["macro_f1"]
        results["binary"] = self._binary(probabilities, truths) if len(self.labels) == 2 else None
        results["baseline"] = self._baseline(split_log_mels, split, evaluated_on)
        self.log("info", f"{evaluated_on} accuracy {results['accuracy']:.3f} "
                         f"(baseline {results['baseline']['accuracy']:.3f}), macro F1 {results['macro_f1']:.3f}")
        return results

    def _binary(self, probabilities: dict[str, np.ndarray], truths: dict[str, np.ndarray]) -> dict[str, Any]:
        positive = positive_label_index(self.labels)
        val_scores = probabilities["val"][:, positive]
        operating = threshold_for_far(val_scores, truths["val"] == positive, self.cfg.target_far)
        result: dict[str, Any] = {
            "positive_label": self.labels[positive],
            "target_far": self.cfg.target_far,
            "threshold": operating["threshold"] if operating else None,
        }
        for name, scores in probabilities.items():
            is_positive = truths[name] == positive
            entry: dict[str, Any] = {"roc_auc": roc_auc(scores[:, positive], is_positive)}
            if operating:
                entry.update(rates_at_threshold(scores[:, positive], is_positive, operating["threshold"]))
            result[name] = entry
        return result

    def _baseline(self, log_mels: dict[str, torch.Tensor], split: Split, evaluated_on: str) -> dict[str, Any]:
        model = LogisticBaseline(len(self.labels)).fit(
            clip_statistics(log_mels["train"]), self.targets[split.train], self._class_weights(split)
        )
        probabilities = model.predict_proba(clip_statistics(log_mels[evaluated_on])).numpy()
        truth = self.targets[split.indices(evaluated_on)].numpy()
        return {
            "description": BASELINE_DESCRIPTION,
            "evaluated_on": evaluated_on,
            **classification_metrics(truth, probabilities, self.labels),
        }

    def _export(self, frontend: LogMelFrontend, network: KeywordCNN, metrics: dict[str, Any]) -> list[str]:
        model = ExportedClassifier(copy.deepcopy(frontend).cpu(), copy.deepcopy(network).cpu()).eval()
        generator = torch.Generator().manual_seed(self.cfg.seed)
        sample = 0.1 * torch.randn(4, self.features.clip_samples, generator=generator)
        architecture = {
            "name": "KeywordCNN",
            "channels": self.cfg.channels,
            "dropout": self.cfg.dropout,
            "n_parameters": metrics["n_parameters"],
        }
        config = build_config(self.labels, self.cfg.task, self.features, self.cfg.to_dict(), architecture)
        config["best_epoch"] = metrics["best_epoch"]
        try:
            return write_artifacts(self.out_dir, model, config, metrics, self.snapshot, sample, self.should_stop)
        except ExportCancelled:
            raise TrainingCancelled("training was cancelled during export") from None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _validate(
    network: KeywordCNN, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: nn.Module
) -> tuple[float, float]:
    network.eval()
    with torch.no_grad():
        logits = torch.cat([network(inputs[i : i + _EVAL_BATCH]) for i in range(0, len(inputs), _EVAL_BATCH)])
        loss = float(loss_fn(logits, targets))
        accuracy = float((logits.argmax(dim=1) == targets).float().mean())
    return loss, accuracy


def _predict(network: KeywordCNN, log_mel: torch.Tensor) -> np.ndarray:
    """Class probabilities for (n, 1, n_mels, frames) dB log-mels."""
    network.eval()
    with torch.no_grad():
        inputs = LogMelFrontend.standardize(log_mel)
        outputs = [torch.softmax(network(inputs[i : i + _EVAL_BATCH]), dim=1)
                   for i in range(0, len(inputs), _EVAL_BATCH)]
    return torch.cat(outputs).cpu().numpy()
