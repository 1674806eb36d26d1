"""The training entry point: split, features, a short training loop, the task's evaluation, export.

``train(cfg, clips, out_dir, on_progress, should_stop, runtime)`` reads top to bottom like the steps it takes;
what differs between tasks (targets, loss, metrics, the exported output) comes from ``tasks.<task>``.

A task whose data or model does not fit the default loop (fixed-length log-mel images, one target per clip)
defines ``fit(run: TaskRun) -> TrainResult`` in its module: ``train()`` then checks the data, sets seeds,
threads and the device, and hands the whole run to it (transcription's variable-length batches and CTC loss,
synthesis's text-to-audio model). ``TaskRun`` carries what such a loop needs and nothing task-specific: the
settings, the trainable clips, the callbacks (``report``, ``log``, ``check_stop``), the speaker-disjoint
``split()``, the cached mel powers (``load_powers()``, for ``feature_config`` when the task sets its own),
``timed()``, the shared metrics (``summary()``) and ``result()``; ``export.write_artifacts`` writes the artifacts
as for every task.

A little over 500 lines: the steps of one run (data, features, the epoch loop, checkpoint choice, export) read best in
one file, each a small named function.
"""

from __future__ import annotations

import copy
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .audio import fit_length, load_waveform
from .augment import Augmenter, KeywordSplicer, augment_waveforms, gaussian_noise_powers, stack_frames
from .background import BackgroundTraining
from .config import FeatureConfig, TrainConfig
from .data import (
    BACKGROUND,
    MIN_CLIPS_PER_LABEL,
    ClipRecord,
    NotTrainable,
    background_roles,
    check_trainable,
    is_noise_label,
    is_unknown_label,
    trainable_clips,
)
from .device import GradScaler, autocast, precision_name
from .export import ExportCancelled, build_config, ensure_free, write_artifacts
from .features import ClipReadError, FeatureCache, LogMelFrontend, load_features
from .model import AveragedNetworks, ExportedModel, KeywordCNN, architecture_kinds, keyword_network, network_inputs
from .split import Split, split_for_task
from .tasks import task_module
from .tasks.common import Fitted, batched_logits

__all__ = [
    "MIN_CLIPS_PER_LABEL",
    "ClipReadError",
    "ClipRecord",
    "NotTrainable",
    "Progress",
    "Runtime",
    "TaskRun",
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
# Random windows of the training background recordings that noise augmentation mixes in.
_BACKGROUND_SEGMENTS = 256
# Checkpoints averaged when the validation stream chooses them (see _Best).
_AVERAGED_CHECKPOINTS = 5


class TrainingCancelled(Exception):
    """``should_stop()`` turned true; nothing was written to the output folder."""


@dataclass(frozen=True)
class Progress:
    phase: str
    percent: float
    eta_seconds: float | None
    epoch: dict[str, Any] | None = None


@dataclass(frozen=True)
class Runtime:
    """Where and how a run happens, as opposed to what it learns (``TrainConfig``).

    ``cache_dir``: feature cache shared between jobs (None: a throwaway one inside ``out_dir``'s parent).
    ``snapshot``: written as snapshot.json beside the model. ``on_log(level, message)``: "info"/"warning" lines.
    ``base_dir``: artifacts (weights.pt, config.json) of the registered version a fine-tune starts from.
    """

    cache_dir: Path | None = None
    snapshot: dict[str, Any] | None = None
    on_log: Callable[[str, str], None] | None = None
    threads: int | None = None
    device: str | None = None
    base_dir: Path | None = None


@dataclass(frozen=True)
class TrainResult:
    labels: list[str]
    metrics: dict[str, Any]
    artifacts: list[str]
    out_dir: Path
    best_epoch: int
    export_seconds: float
    total_seconds: float


@dataclass
class TaskRun:
    """One run: the settings, the data and the callbacks; what the default loop's helpers and a task's own
    ``fit(run)`` share.

    ``clips``: the clips the task trains on (``trainable_clips``); ``backgrounds``: the dataset's long background
    recordings; ``report(phase, fraction, eta_seconds, epoch=None)``: progress within one of ``PHASES`` (an
    ``epoch`` dict goes into the job's curves: "epoch", "train_loss", "val_loss" and the task's ``EPOCH_METRIC``
    key); ``log(level, message)``; ``check_stop()`` raises ``TrainingCancelled`` (call it every batch);
    ``timings``: seconds per phase, stored with the metrics.
    """

    cfg: TrainConfig
    clips: list[ClipRecord]
    out_dir: Path
    runtime: Runtime
    report: _Reporter
    should_stop: Callable[[], bool]
    device: torch.device
    backgrounds: list[ClipRecord] = field(default_factory=list)
    task: Any = None
    labels: list[str] = field(default_factory=list)
    targets: torch.Tensor | None = None
    split_summary: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    feature_config: FeatureConfig | None = None  # a task's own (transcription: clips of any length)
    precision: str = "fp32"  # what the network trained in: "bf16"/"fp16" under CUDA autocast (ml/device.py)
    members: dict[str, Any] = field(default_factory=dict)  # several networks: their kinds, best epochs, epochs run
    averaged_epochs: list[int] = field(default_factory=list)  # the checkpoints averaged into the model, if any

    @property
    def features(self) -> FeatureConfig:
        return self.feature_config or self.cfg.features()

    def log(self, level: str, message: str) -> None:
        if self.runtime.on_log is not None:
            self.runtime.on_log(level, message)

    def check_stop(self) -> None:
        if self.should_stop():
            raise TrainingCancelled("training was cancelled")

    def split(self) -> Split:
        """The speaker-disjoint train/validation/test split, stratified by the task's ``stratum``."""
        return _split(self)

    def timed(self, name: str, step: Callable, *args):
        """``step(*args)``, its duration recorded in ``timings[name]``."""
        return _timed(self, name, step, *args)

    def load_powers(self, phase: str = "features", share: float = 1.0) -> tuple[list[torch.Tensor], dict[str, int]]:
        """Every clip's mel power (n_mels, frames) from the feature cache or decoded, whole clips at least
        ``features.clip_samples`` long (shorter ones zero-padded around the centre), and cache hits/misses.
        Progress goes out as ``phase`` from 0 to ``share`` of it: a trainer that needs the powers only to evaluate
        loads them in its "evaluating" phase, so the panel's progress never runs backwards."""
        return _timed(self, "features_seconds", _load_powers, self, phase, share)

    def summary(self, network: nn.Module, split: Split, history: list[dict[str, Any]], best_epoch: int,
                cache_stats: dict[str, int]) -> dict[str, Any]:
        """The metrics every task's results share: split, history, best epoch, timings, parameters."""
        return _run_summary(self, network, split, history, best_epoch, len(history) < self.cfg.epochs, cache_stats)

    def result(self, metrics: dict[str, Any], artifacts: list[str], best_epoch: int,
               export_seconds: float) -> TrainResult:
        total = time.monotonic() - self.started
        self.log("info", f"artifacts written to {self.out_dir} in {export_seconds:.1f} s; total {total:.1f} s")
        return TrainResult(self.labels, metrics, artifacts, self.out_dir, best_epoch, export_seconds, total)


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
    on_progress: Callable[[Progress], None],
    should_stop: Callable[[], bool],
    runtime: Runtime = Runtime(),
) -> TrainResult:
    """Train the model ``cfg.task`` describes on ``clips`` and write its artifacts atomically into ``out_dir``.

    Raises ``NotTrainable`` before any work when the data cannot train a model, and ``TrainingCancelled``
    (leaving ``out_dir`` untouched) as soon as ``should_stop()`` is true; it is polled every batch.
    """
    problems = check_trainable(clips, cfg)
    if problems:
        raise NotTrainable(problems)
    out_dir = Path(out_dir)
    ensure_free(out_dir)
    device = torch.device(runtime.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    run = TaskRun(cfg, trainable_clips(clips, cfg), out_dir, runtime, _Reporter(on_progress), should_stop, device,
                  backgrounds=[clip for clip in clips if clip.kind == BACKGROUND])
    with _torch_settings(runtime.threads or default_threads(), device):
        return _execute(run)


def _execute(run: TaskRun) -> TrainResult:
    started = run.started
    _seed_everything(run.cfg.seed)
    run.report("preparing", 0.0, None)
    run.task = task_module(run.cfg.task)
    if hasattr(run.task, "fit") and getattr(run.task, "fits_itself", lambda cfg: True)(run.cfg):
        return run.task.fit(run)
    run.labels = run.task.labels(run.clips, run.cfg)
    run.targets = run.task.targets(run.clips, run.labels, run.cfg)
    split = _split(run)
    run.timings["preparing_seconds"] = time.monotonic() - started
    run.check_stop()

    powers, cache_stats = _timed(run, "features_seconds", _load_powers, run)
    frontend = LogMelFrontend(run.features).to(run.device)
    refits = _refits(run, split)
    network, history, best_epoch, stopped_early = _timed(
        run, "training_seconds", _fit_networks, run, frontend, powers, split, 0.5 if refits else 1.0
    )

    mark = time.monotonic()
    selection = None
    if refits:
        # Judge the selected model first (its validation metrics are the honest ones), then train the final one.
        selection = run.task.evaluate(_fitted(run, frontend, network, powers, split))
        network, refit_history = _timed(run, "refit_seconds", _refit, run, frontend, powers, split, best_epoch)
        run.timings["training_seconds"] += run.timings["refit_seconds"]
        mark = time.monotonic()
    run.report("evaluating", 0.0, _EXPORT_SECONDS_ESTIMATE)
    fitted = _fitted(run, frontend, network, powers, split, _calibration(selection))
    metrics = {
        **run.task.evaluate(fitted),
        **_run_summary(run, network, split, history, best_epoch, stopped_early, cache_stats),
    }
    if isinstance(network, AveragedNetworks):
        metrics["networks"] = run.members
    if selection is not None:
        metrics = _with_refit(run, metrics, selection, split, best_epoch, refit_history)
    metrics["prediction"] = run.task.export_config(metrics, run.cfg)

    mark = start_export(run, metrics, mark, _EXPORT_SECONDS_ESTIMATE)
    artifacts = _export(run, fitted.export_model(), metrics)
    export_seconds = time.monotonic() - mark
    run.report("exporting", 1.0, 0.0)
    return run.result(metrics, artifacts, best_epoch, export_seconds)


# Steps ---------------------------------------------------------------------------------------------------------

def _split(run: TaskRun) -> Split:
    """Speaker-disjoint split, stratified by the task's strata (labels; score bins for regression)."""
    split, strata = split_for_task(run.clips, run.cfg)
    run.log("info", f"split: {len(split.train)} train, {len(split.val)} validation, {len(split.test)} test clips"
                    + (" (grouped by speaker)" if split.grouped_by_speaker else ""))
    for note in split.notes:
        run.log("warning", note)
    if not split.val:
        raise NotTrainable(["no clips are left for validation after splitting"])
    run.split_summary = split.summary(strata)
    return split


def _load_powers(run: TaskRun, phase: str = "features", share: float = 1.0,
                 ) -> tuple[list[torch.Tensor], dict[str, int]]:
    mark = time.monotonic()
    with _cache_dir(run.runtime.cache_dir) as cache_dir:
        powers, hits, misses = load_features(
            run.clips, run.features, FeatureCache(cache_dir, run.features), LogMelFrontend(run.features),
            run.should_stop, lambda done: run.report(phase, share * done / len(run.clips), None),
        )
    run.check_stop()
    run.log("info", f"features: {hits} clips from the cache, {misses} decoded ({time.monotonic() - mark:.1f} s)")
    return powers, {"hits": hits, "misses": misses}


def _network(run: TaskRun, kind: str | None = None) -> nn.Module:
    """A fresh network of ``kind`` (one of the kinds the architecture setting names; default: all of them)."""
    cfg = run.cfg
    return keyword_network(run.task.n_outputs(run.labels), run.features.n_mels, kind or cfg.architecture,
                           cfg.channels, cfg.dropout, cfg.convs_per_block).to(run.device)


# Seeds of the n-th network of an ensemble are this far from the first's.
_MEMBER_SEED_STRIDE = 1000


def _fit_networks(
    run: TaskRun, frontend: LogMelFrontend, powers: list[torch.Tensor], split: Split, share: float = 1.0
) -> tuple[nn.Module, list[dict[str, Any]], int, bool]:
    """``_fit`` once, or once per network kind the architecture names ("conv2d+temporal"), each from its own seeds,
    averaged (``AveragedNetworks``). The curves, best epoch and early stop reported are the first network's; every
    network's best epoch and epochs run go to ``run.members``."""
    kinds = architecture_kinds(run.cfg.architecture)
    if len(kinds) == 1:
        return (_fit_embedding if kinds[0] == "embedding" else _fit)(run, frontend, powers, split, share)
    count = len(kinds)
    fits = [(_fit_embedding if kind == "embedding" else _fit)(run, frontend, powers, split, share / count, member,
                                                              share * member / count, kind)
            for member, kind in enumerate(kinds)]
    run.members = {"kinds": kinds, "best_epochs": [fit[2] for fit in fits], "epochs_run": [len(fit[1]) for fit in fits]}
    run.log("info", "averaging " + " and ".join(f"{kind} (best epoch {fit[2]})" for kind, fit in zip(kinds, fits,
                                                                                                    strict=True)))
    network = AveragedNetworks([fit[0] for fit in fits], isinstance(run.task.output_layer(), nn.Softmax))
    network = network.to(run.device).eval()
    return network, fits[0][1], fits[0][2], fits[0][3]


def _fit(
    run: TaskRun, frontend: LogMelFrontend, powers: list[torch.Tensor], split: Split, share: float = 1.0,
    member: int = 0, offset: float = 0.0, kind: str | None = None,
) -> tuple[KeywordCNN, list[dict[str, Any]], int, bool]:
    """Train epoch by epoch; keep the weights of the best epoch: the lowest validation loss, or for a task that
    trains on background audio the fewest validation false rejects within the false-accept budget
    (``background.BackgroundTraining``).

    ``share``: the part of the training phase's progress bar this pass fills from ``offset`` on (a refit or the other
    networks of an ensemble follow it); ``member``: which network of an ensemble (its seeds), of ``kind``."""
    cfg = run.cfg
    seed = cfg.seed + _MEMBER_SEED_STRIDE * member
    generator = torch.Generator().manual_seed(seed)
    background = _background_training(run)
    augmenter = _augmenter(run, powers, split.train, torch.Generator().manual_seed(seed + 1), background)
    val_inputs, val_targets = _validation_batch(run, frontend, powers, split)
    loss_fn = run.task.loss_function(run.targets[split.train], run.labels, cfg, run.device)
    if member:
        torch.manual_seed(seed)
    network = _network(run, kind)
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scaler = GradScaler(run.device)
    run.precision = precision_name(run.device)
    negatives = background.negatives if background is not None else None
    crops = _crop_offsets(run, powers, split.train)
    val_positives = [i for i in split.val if float(run.targets[i]) > 0.5]
    steps_per_epoch = -(-(len(split.train) + (negatives.per_epoch if negatives else 0)) // cfg.batch_size)
    scheduler = one_cycle(optimizer, cfg.learning_rate, cfg.epochs * steps_per_epoch)
    clock = TrainingClock(cfg.epochs, share, offset)
    mixer = _mixer(run, seed)
    splicer = _splicer(run, powers, split.train, torch.Generator().manual_seed(seed + 4))

    history: list[dict[str, Any]] = []
    best = _Best(_AVERAGED_CHECKPOINTS if background is not None and background.selection is not None else 1)
    for epoch in range(1, cfg.epochs + 1):
        epoch_started = time.monotonic()
        extra = negatives.for_epoch(generator) if negatives else []
        train_loss = _train_one_epoch(
            run, network, frontend, [powers[i] for i in split.train] + extra,
            torch.cat([run.targets[split.train], torch.zeros(len(extra), dtype=run.targets.dtype)]),
            augmenter, loss_fn, optimizer, scaler, scheduler, generator,
            lambda step: run.report("training", *clock.at(epoch - 1 + step / steps_per_epoch)), mixer, splicer,
            crops + [None] * len(extra),
        )
        if negatives:
            negatives.mine(network, frontend, run.check_stop, generator)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            **_validate(run, network, val_inputs, val_targets, loss_fn),
        }
        if background is not None and background.selection is not None and val_positives:
            positive_scores = _clip_scores(run, network, frontend, powers, val_positives)
            record.update(background.select(network, frontend, positive_scores, cfg, run.check_stop, run.device))
        record.update({"lr": optimizer.param_groups[0]["lr"], "seconds": time.monotonic() - epoch_started})
        if end_epoch(run, best, history, network, record, clock, member):
            break

    def judge(candidate: nn.Module) -> dict[str, Any]:
        record = _validate(run, candidate, val_inputs, val_targets, loss_fn)
        return {**record, **background.select(candidate, frontend, _clip_scores(
            run, candidate, frontend, powers, val_positives), cfg, run.check_stop, run.device)}

    selects = background is not None and background.selection is not None and val_positives
    best_epoch = best.restore(network, history, run.log, judge if selects else None)
    run.averaged_epochs = best.averaged
    return network.eval(), history, best_epoch, len(history) < cfg.epochs


# The speech embedding head trains on the embeddings of each training clip and of this many randomly changed copies
# (augment_waveforms), computed once per job: the frozen embedding costs far more than the head, so it is not run again
# every epoch. Its own batch size and learning rate (measured on the hard keyword corpus; docs/benchmarks.md).
_EMBEDDING_COPIES = 4
_EMBEDDING_BATCH = 32
_EMBEDDING_LEARNING_RATE = 0.003


def _fit_embedding(
    run: TaskRun, frontend: LogMelFrontend, powers: list[torch.Tensor], split: Split, share: float = 1.0,
    member: int = 0, offset: float = 0.0, kind: str | None = None,
) -> tuple[nn.Module, list[dict[str, Any]], int, bool]:
    """The speech embedding head (``SpeechEmbeddingClassifier``), trained like ``_fit`` trains a CNN (the same loss,
    epochs, early stopping and checkpoint choice by validation loss) but on embeddings computed once: of the
    training clips, of ``_EMBEDDING_COPIES`` augmented copies of them, and of the validation clips."""
    cfg = run.cfg
    seed = cfg.seed + _MEMBER_SEED_STRIDE * member
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    network = _network(run, "embedding")
    clock = TrainingClock(cfg.epochs, share, offset)
    run.report("training", *clock.at(0))
    train_waves, val_waves = _clip_waveforms(run, split.train), _clip_waveforms(run, split.val)
    copies = [train_waves]
    if cfg.time_shift or cfg.noise:
        noise = [position for position, index in enumerate(split.train) if is_noise_label(run.clips[index].label)]
        noise_waves = train_waves[noise] if noise else None
        augmenting = torch.Generator().manual_seed(seed + 5)
        copies += [augment_waveforms(train_waves, noise_waves, augmenting, cfg.time_shift, cfg.noise)
                   for _ in range(_EMBEDDING_COPIES)]
    mark = time.monotonic()
    inputs = _embeddings(run, network, torch.cat(copies))
    val_inputs = _embeddings(run, network, val_waves)
    run.log("info", f"speech embedding: {len(inputs)} training clips ({len(copies) - 1} augmented copies of each) and "
                    f"{len(val_inputs)} validation clips embedded in {time.monotonic() - mark:.1f} s")
    targets = run.targets[split.train].repeat(len(copies)).to(run.device)
    val_targets = run.targets[split.val].to(run.device)
    loss_fn = run.task.loss_function(run.targets[split.train], run.labels, cfg, run.device)
    head = network.head
    optimizer = torch.optim.AdamW(head.parameters(), lr=_EMBEDDING_LEARNING_RATE, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(inputs) // _EMBEDDING_BATCH)
    scheduler = one_cycle(optimizer, _EMBEDDING_LEARNING_RATE, cfg.epochs * steps_per_epoch)
    history: list[dict[str, Any]] = []
    best = _Best()
    for epoch in range(1, cfg.epochs + 1):
        epoch_started = time.monotonic()
        head.train()
        order = torch.randperm(len(inputs), generator=generator).to(run.device)
        loss_sum = 0.0
        for start in range(0, len(order), _EMBEDDING_BATCH):
            run.check_stop()
            batch = order[start : start + _EMBEDDING_BATCH]
            loss = loss_fn(head(inputs[batch]), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(batch)
        record = {"epoch": epoch, "train_loss": loss_sum / len(order),
                  **_validate(run, head, val_inputs, val_targets, loss_fn),
                  "lr": optimizer.param_groups[0]["lr"], "seconds": time.monotonic() - epoch_started}
        if end_epoch(run, best, history, head, record, clock, member):
            break
    best_epoch = best.restore(head, history, run.log)
    return network.eval(), history, best_epoch, len(history) < cfg.epochs


def _clip_waveforms(run: TaskRun, indices: list[int]) -> torch.Tensor:
    """The clips' waveforms (len(indices), clip_samples), centred as a prediction centres them."""
    rate, samples = run.features.sample_rate, run.features.clip_samples
    waves = []
    for index in indices:
        try:
            waves.append(fit_length(load_waveform(run.clips[index].path, rate), samples, "center"))
        except (OSError, RuntimeError) as error:
            raise ClipReadError(f"clip {run.clips[index].id}: cannot read {run.clips[index].path}: {error}") from error
    return torch.stack(waves) if waves else torch.zeros(0, samples)


def _embeddings(run: TaskRun, network: nn.Module, waves: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """The frozen speech embeddings of ``waves`` on the run's device, (n, embeddings, 96)."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(waves), batch):
            run.check_stop()
            parts.append(network.embed(waves[start : start + batch].to(run.device)))
    return torch.cat(parts)


def _refits(run: TaskRun, split: Split) -> bool:
    """Whether this run refits: asked for, a classification run, and a test split to judge the refit model on
    (without one, the only unseen clips would be validation clips the refit trains on)."""
    if not run.cfg.refit or run.cfg.task != "classification":
        return False
    if not split.test:
        run.log("info", "refit skipped: there is no test split to judge a model trained on the validation clips, "
                        "so the model validation chose is registered")
        return False
    return True


def _refit(
    run: TaskRun, frontend: LogMelFrontend, powers: list[torch.Tensor], split: Split, epochs: int
) -> tuple[KeywordCNN, list[dict[str, Any]]]:
    """A fresh network trained on the training and validation clips together for the ``epochs`` validation chose
    (the one-cycle schedule fitted to that length); the test clips stay unseen."""
    cfg = run.cfg
    indices = sorted(split.train + split.val)
    run.log("info", f"refit: training a new model on {len(indices)} training + validation clips for {epochs} epochs")
    generator = torch.Generator().manual_seed(cfg.seed + 7)
    augmenter = _augmenter(run, powers, indices, torch.Generator().manual_seed(cfg.seed + 8))
    loss_fn = run.task.loss_function(run.targets[indices], run.labels, cfg, run.device)
    torch.manual_seed(cfg.seed + 9)
    network = _network(run)
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scaler = GradScaler(run.device)
    steps_per_epoch = -(-len(indices) // cfg.batch_size)
    scheduler = one_cycle(optimizer, cfg.learning_rate, epochs * steps_per_epoch)
    clock = TrainingClock(epochs, 0.5, offset=0.5)
    mixer = _mixer(run)
    splicer = _splicer(run, powers, indices, torch.Generator().manual_seed(cfg.seed + 10))
    history = []
    for epoch in range(1, epochs + 1):
        epoch_started = time.monotonic()
        train_loss = _train_one_epoch(
            run, network, frontend, [powers[i] for i in indices], run.targets[indices], augmenter, loss_fn, optimizer,
            scaler, scheduler, generator,
            lambda step: run.report("training", *clock.at(epoch - 1 + step / steps_per_epoch)), mixer, splicer,
        )
        history.append({"epoch": epoch, "train_loss": train_loss, "seconds": time.monotonic() - epoch_started})
    return network.eval(), history


def _with_refit(run: TaskRun, metrics: dict[str, Any], selection: dict[str, Any], split: Split, best_epoch: int,
                history: list[dict[str, Any]]) -> dict[str, Any]:
    """The refit model's metrics (test, baseline) with the selection model's validation metrics: the refit trained
    on the validation clips, so only the selected model's validation scores are unseen-data scores."""
    metrics = dict(metrics)
    metrics["val"] = selection["val"]
    for name in ("binary", "open_set"):  # their validation figures too are the selection run's
        if (metrics.get(name) or {}).get("val") is not None and selection.get(name):
            metrics[name]["val"] = selection[name]["val"]
    metrics["registered_model"] = (f"refit on {len(split.train) + len(split.val)} training + validation clips for "
                                   f"{best_epoch} epochs (the epoch count validation chose)")
    metrics["refit"] = {
        "epochs": best_epoch,
        "clips": len(split.train) + len(split.val),
        "history": history,
        "seconds": run.timings["refit_seconds"],
        "selection_test_accuracy": (selection.get("test") or {}).get("accuracy"),
        "note": "test metrics are the refit (registered) model's; validation metrics and the thresholds calibrated "
                "on validation are the selected model's, since the refit trained on the validation clips",
    }
    run.log("info", f"registered the refit model: test accuracy {metrics['accuracy']:.3f} "
                    f"(the selected model scored {metrics['refit']['selection_test_accuracy']:.3f})")
    return metrics


def _reversed_unknowns(
    run: TaskRun, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Play a share of the batch's keyword clips backwards and label them unknown: speech-like sounds with the
    keywords' own voices and vowels that are not keywords, so the unknown class learns more than the few other
    words the data holds (classification with an unknown label only)."""
    if run.cfg.task != "classification":
        return inputs, targets
    unknown = [index for index, label in enumerate(run.labels) if is_unknown_label(label)]
    if not unknown:
        return inputs, targets
    keyword = torch.tensor([not (is_unknown_label(label) or is_noise_label(label)) for label in run.labels])
    chosen = keyword[targets.cpu()] & (torch.rand(len(targets), generator=generator) < run.cfg.reversed_unknowns)
    if not bool(chosen.any()):
        return inputs, targets
    chosen = chosen.to(inputs.device)
    inputs = torch.where(chosen.view(-1, 1, 1, 1), inputs.flip(-1), inputs)
    targets = torch.where(chosen, torch.full_like(targets, unknown[0]), targets)
    return inputs, targets


def _splicer(run: TaskRun, powers: list[torch.Tensor], indices: list[int],
             generator: torch.Generator) -> KeywordSplicer | None:
    """Near-miss negatives spliced from the training keywords ``indices`` (classification with an unknown label and
    ``spliced_unknowns`` on), or None. Positions in the splicer are positions in ``indices``, as in the epoch loop."""
    if run.cfg.spliced_unknowns <= 0 or run.cfg.task != "classification":
        return None
    if not any(is_unknown_label(label) for label in run.labels):
        return None
    keywords = [label for label in run.labels if not (is_unknown_label(label) or is_noise_label(label))]
    splicer = KeywordSplicer([powers[i] for i in indices], [run.clips[i].label for i in indices],
                             [run.clips[i].speaker for i in indices], keywords, generator)
    excluded = ", ".join(f"{a}/{b}" for a, b in splicer.excluded_pairs) or "none"
    run.log("info", f"spliced unknowns: {run.cfg.spliced_unknowns:.0%} of keyword clips per batch become the start of "
                    f"another keyword joined to their end; pairs too alike to splice: {excluded}")
    return splicer


def _spliced_unknowns(
    run: TaskRun, splicer: KeywordSplicer, indices: list[int], batch_powers: list[torch.Tensor],
    targets: torch.Tensor,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Replace a ``spliced_unknowns`` share of the batch's keyword clips with splices labelled unknown."""
    unknown = next(index for index, label in enumerate(run.labels) if is_unknown_label(label))
    draws = torch.rand(len(indices), generator=splicer.generator).tolist()
    batch_powers, targets = list(batch_powers), targets.clone()
    for position, (index, draw) in enumerate(zip(indices, draws, strict=True)):
        if draw < run.cfg.spliced_unknowns and index < len(splicer.labels) and splicer.can_splice(index):
            batch_powers[position] = splicer.splice(index)
            targets[position] = unknown
    return batch_powers, targets


def _mixer(run: TaskRun, seed: int | None = None) -> np.random.Generator | None:
    """Mixing weights for mixup (classification only), or None when it is off."""
    if run.cfg.mixup <= 0 or run.cfg.task != "classification":
        return None
    return np.random.default_rng((run.cfg.seed if seed is None else seed) + 3)


def _train_one_epoch(
    run: TaskRun, network: KeywordCNN, frontend: LogMelFrontend, powers: list[torch.Tensor], targets: torch.Tensor,
    augmenter: Augmenter, loss_fn: Callable, optimizer: torch.optim.Optimizer, scaler: GradScaler, scheduler,
    generator: torch.Generator, on_step: Callable[[int], None], mixer: np.random.Generator | None = None,
    splicer: KeywordSplicer | None = None, crops: list[tuple[int, int] | None] | None = None,
) -> float:
    """One pass over ``powers`` (the training clips, then any background negatives) with their ``targets``;
    ``crops``: where each one's random window may start (None: anywhere)."""
    network.train()
    order = torch.randperm(len(powers), generator=generator).tolist()
    loss_sum = 0.0
    for step, start in enumerate(range(0, len(order), run.cfg.batch_size), start=1):
        run.check_stop()
        indices = order[start : start + run.cfg.batch_size]
        batch_powers, batch_targets = [powers[i] for i in indices], targets[indices]
        if splicer is not None:
            batch_powers, batch_targets = _spliced_unknowns(run, splicer, indices, batch_powers, batch_targets)
        inputs = _augmented_batch(run, frontend, augmenter, batch_powers,
                                  [crops[i] for i in indices] if crops is not None else None)
        batch_targets = batch_targets.to(run.device)
        if run.cfg.reversed_unknowns > 0:
            inputs, batch_targets = _reversed_unknowns(run, inputs, batch_targets, augmenter.generator)
        partner = None
        if mixer is not None and len(indices) > 1:
            # Mixup: blend each input with another of the batch; the loss blends the two targets' losses alike.
            weight = float(mixer.beta(run.cfg.mixup, run.cfg.mixup))
            partner = torch.from_numpy(mixer.permutation(len(indices))).to(run.device)
            inputs = weight * inputs + (1 - weight) * inputs[partner]
        with autocast(run.device):  # the CNN in bf16/fp16 on CUDA; the loss below in fp32
            outputs = network(inputs).float()
        if partner is not None:
            loss = weight * loss_fn(outputs, batch_targets) + (1 - weight) * loss_fn(outputs, batch_targets[partner])
        else:
            loss = loss_fn(outputs, batch_targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.step(loss, optimizer)
        scheduler.step()
        loss_sum += loss.item() * len(indices)
        on_step(step)
    return loss_sum / len(order)


def _augmented_batch(
    run: TaskRun, frontend: LogMelFrontend, augmenter: Augmenter, batch_powers: list[torch.Tensor],
    crops: list[tuple[int, int] | None] | None = None,
) -> torch.Tensor:
    batch = stack_frames(batch_powers, run.features.n_frames, "random", augmenter.generator, crops)
    return augmenter.log_mel(frontend.normalize(augmenter.power(batch.to(run.device))))


def _validation_batch(
    run: TaskRun, frontend: LogMelFrontend, powers: list[torch.Tensor], split: Split
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        val_powers = stack_frames([powers[i] for i in split.val], run.features.n_frames, "center")
        return frontend.normalize(val_powers.to(run.device)), run.targets[split.val].to(run.device)


def _validate(
    run: TaskRun, network: KeywordCNN, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: Callable
) -> dict[str, float]:
    network.eval()
    with torch.no_grad():
        outputs = batched_logits(network, inputs)
        return {"val_loss": float(loss_fn(outputs, targets)), **run.task.epoch_metrics(outputs, targets)}


class _Best:
    """The best epoch so far, its weights, and epochs since it. Best: the lowest validation loss; when epochs
    carry ``val_frr`` (the validation false rejects within the false-accept budget), the lowest of those, then
    the lowest loss. With ``average`` > 1 it also keeps the weights of that many best epochs: openWakeWord merges
    its best checkpoints into one model by averaging their weights, which evens out the epoch-to-epoch swings of a
    small validation stream; ``restore`` keeps the average when the validation judges it at least as good."""

    def __init__(self, average: int = 1) -> None:
        self.key: tuple[float, ...] = (float("inf"),)
        self.loss, self.epoch, self.state, self.stale = float("inf"), 0, None, 0
        self.measure = "the validation loss"  # what the early stop's log line says did not improve
        self.average = average
        self.top: list[tuple[tuple[float, ...], int, dict[str, torch.Tensor]]] = []
        self.averaged: list[int] = []  # the epochs whose average ``restore`` kept

    @staticmethod
    def key_of(record: dict[str, Any]) -> tuple[float, ...]:
        return (record["val_frr"], record["val_loss"]) if "val_frr" in record else (record["val_loss"],)

    @staticmethod
    def better(key: tuple[float, ...], than: tuple[float, ...]) -> bool:
        if len(key) != len(than):
            return len(key) > len(than)  # the first epoch judged on the stream beats those judged on loss alone
        if len(key) > 1 and abs(key[0] - than[0]) > 1e-9:
            return key[0] < than[0]
        return key[-1] < than[-1] - 1e-4

    def update(self, network: nn.Module, record: dict[str, Any]) -> None:
        key = self.key_of(record)
        if len(key) > 1:
            self.measure = "the validation false rejects within the false-accept budget"
        if self.average > 1 and math.isfinite(record["val_loss"]):
            self.top.append((key, record["epoch"], copy.deepcopy(network.state_dict())))
            self.top.sort(key=lambda item: (-len(item[0]), *item[0]))
            del self.top[self.average :]
        if self.better(key, self.key):
            self.key, self.loss, self.epoch, self.stale = key, record["val_loss"], record["epoch"], 0
            self.state = copy.deepcopy(network.state_dict())
        else:
            self.stale += 1

    def restore(self, network: nn.Module, history: list[dict[str, Any]], log: Callable[[str, str], None],
                judge: Callable[[nn.Module], dict[str, Any]] | None = None) -> int:
        if self.state is None:
            # Validation loss was never finite: keep the last weights rather than none.
            log("warning", "validation loss was never finite; keeping the weights of the last epoch")
            self.epoch = len(history)
            return self.epoch
        network.load_state_dict(self.state)
        chosen = f"false rejects {self.key[0]:.1%} within the false-accept budget, " if len(self.key) > 1 else ""
        log("info", f"best epoch {self.epoch} of {len(history)}: validation {chosen}loss {self.loss:.4f}")
        candidates = [state for key, _, state in self.top if len(key) == len(self.key)]
        if judge is None or len(candidates) < 2:
            return self.epoch
        network.load_state_dict(_averaged(candidates))
        record = judge(network)
        epochs = sorted(epoch for key, epoch, _ in self.top if len(key) == len(self.key))
        if self.key_of(record)[0] <= self.key[0]:  # no more validation false rejects than the best epoch
            self.averaged = epochs
            log("info", f"kept the average of the weights of epochs {', '.join(map(str, epochs))}: validation "
                        f"false rejects {record['val_frr']:.1%}, loss {record['val_loss']:.4f}")
        else:
            network.load_state_dict(self.state)
        return self.epoch


def _averaged(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean of several state dicts (BatchNorm statistics too; integer counters from the first)."""
    return {name: (torch.stack([state[name] for state in states]).mean(dim=0) if value.is_floating_point()
                   else value.clone()) for name, value in states[0].items()}


def end_epoch(run: TaskRun, best: Any, history: list[dict[str, Any]], network: nn.Module, record: dict[str, Any],
              clock: TrainingClock, member: int = 0) -> bool:
    """Every trainer's end of epoch: keep ``record`` in ``history``, let ``best`` (a ``_Best``, or ``ctc._Best``)
    judge ``network`` on it, report progress and log the early stop. True when ``best`` has not improved for the
    configured patience: stop training. The job's curves are the first network's (an ensemble's other ``member``s
    only move the progress bar)."""
    cfg, epoch = run.cfg, record["epoch"]
    history.append(record)
    best.update(network, record)
    patience_over = 0 < cfg.early_stopping_patience <= best.stale
    run.report("training", *clock.at(cfg.epochs if patience_over else epoch), epoch=None if member else record)
    if patience_over:
        run.log("info", f"early stop after epoch {epoch}: {best.measure} last improved at epoch {best.epoch}")
    return patience_over


def start_export(run: TaskRun, metrics: dict[str, Any], evaluation_started: float,
                 eta_seconds: float | None = None) -> float:
    """Every trainer's switch from evaluating to exporting: record the evaluation's seconds (it began at
    ``evaluation_started``, a ``time.monotonic()``), copy the timings so far into ``metrics``, stop here if the job
    was cancelled, then report the exporting phase. Returns the export's start, for its own seconds."""
    run.timings["evaluating_seconds"] = time.monotonic() - evaluation_started
    metrics["timings"] = dict(run.timings)
    run.check_stop()
    started = time.monotonic()
    run.report("exporting", 0.0, eta_seconds)
    return started


class TrainingClock:
    """(fraction of training done, ETA in seconds) for a number of epochs done, of a pass that fills ``share``
    of the training phase from ``offset`` on (a refit is the second half)."""

    def __init__(self, epochs: int, share: float = 1.0, offset: float = 0.0) -> None:
        self.epochs = epochs
        self.share = share
        self.offset = offset
        self.started = time.monotonic()

    def at(self, epochs_done: float) -> tuple[float, float | None]:
        done = min(epochs_done / self.epochs, 1.0)
        overall = self.offset + self.share * done
        if done <= 0:
            return overall, None
        elapsed = time.monotonic() - self.started
        # A pass followed by a refit takes about as long again (at most as many epochs on a little more data).
        remaining = elapsed / done * ((1 - done) + (1 - self.offset - self.share) / self.share)
        return overall, remaining + _EXPORT_SECONDS_ESTIMATE


def _augmenter(run: TaskRun, powers: list[torch.Tensor], train: list[int], generator: torch.Generator,
               background: BackgroundTraining | None = None) -> Augmenter:
    cfg = run.cfg
    return Augmenter(
        time_shift=cfg.time_shift,
        noise=cfg.noise,
        spec_augment=cfg.spec_augment,
        warp=cfg.warp,
        noise_powers=_noise_sources(run, powers, train, generator, background),
        generator=generator,
    )


def _noise_sources(run: TaskRun, powers: list[torch.Tensor], train: list[int], generator: torch.Generator,
                   background: BackgroundTraining | None = None):
    if not run.cfg.noise:
        return []
    if background is not None and background.train is not None and len(background.train):
        windows = background.noise_powers(_BACKGROUND_SEGMENTS, generator)
        run.log("info", f"noise augmentation mixes {len(windows)} random windows of "
                        f"{background.roles.sources['train']}")
        return windows
    noise_clips = [powers[i] for i in train if is_noise_label(run.clips[i].label)]
    if noise_clips:
        run.log("info", f"noise augmentation mixes {len(noise_clips)} training clips of the noise label")
        return noise_clips
    run.log("info", "noise augmentation uses gaussian noise (no noise label in the data)")
    return gaussian_noise_powers(LogMelFrontend(run.features), run.features, 8, generator)


def _background_training(run: TaskRun) -> BackgroundTraining | None:
    """The background recordings' windows and validation stream, for a task that trains on them."""
    if not getattr(run.task, "TRAINS_ON_BACKGROUND", False) or not run.backgrounds:
        return None
    return BackgroundTraining.build(run.cfg, background_roles(run.backgrounds), run.features, run.device,
                                    run.check_stop, run.log)


def _crop_offsets(run: TaskRun, powers: list[torch.Tensor], indices: list[int]) -> list[tuple[int, int] | None]:
    """Where each training clip's random window may start: anywhere, unless the task narrows it (``crop_range``:
    a detection positive's window holds the whole phrase)."""
    crop_range = getattr(run.task, "crop_range", None)
    if crop_range is None:
        return [None] * len(indices)
    return [crop_range(run.clips[i], powers[i], run.cfg, run.features.n_frames) for i in indices]


def _clip_scores(run: TaskRun, network: KeywordCNN, frontend: LogMelFrontend, powers: list[torch.Tensor],
                 indices: list[int]) -> np.ndarray:
    """Each clip's detection score as a prediction computes it: the sigmoid of its windows a hop
    (``window_hop_seconds``) apart, the last one ending at the clip's end, smoothed over ``smoothing_hops``, at
    their highest."""
    from .streaming import smoothed
    from .tasks.common import window_starts

    n_frames = run.features.n_frames
    hop_seconds = run.task.window_hop_seconds(run.cfg.clip_seconds)
    hop = max(1, int(round(hop_seconds * run.features.sample_rate / run.features.hop)))
    windows, counts = [], []
    for index in indices:
        starts = window_starts(powers[index].shape[-1], n_frames, hop)
        windows.extend(fixed_frames_at(powers[index], start, n_frames) for start in starts)
        counts.append(len(starts))
    network.eval()
    with torch.no_grad():
        logits = batched_logits(network, frontend.normalize(torch.stack(windows).to(run.device)))[:, 0]
    scores = torch.sigmoid(logits.double()).cpu().numpy()
    bounds = np.cumsum([0, *counts])
    return np.array([smoothed(scores[bounds[i] : bounds[i + 1]], run.cfg.smoothing_hops).max()
                     for i in range(len(indices))])


def fixed_frames_at(power: torch.Tensor, start: int, n_frames: int) -> torch.Tensor:
    window = power[:, start : start + n_frames]
    return window if window.shape[-1] == n_frames else torch.nn.functional.pad(window, (0, n_frames - window.shape[-1]))


def _calibration(selection: dict[str, Any] | None) -> dict[str, float]:
    """Thresholds of the selection run, for a refit whose own validation outputs are of clips it trained on."""
    found = {}
    if selection and selection.get("open_set"):
        found["open_set"] = selection["open_set"]["threshold"]
    if selection and (selection.get("binary") or {}).get("threshold") is not None:
        found["binary"] = selection["binary"]["threshold"]
    return found


def _fitted(
    run: TaskRun, frontend: LogMelFrontend, network: KeywordCNN, powers: list[torch.Tensor], split: Split,
    calibration: dict[str, float] | None = None,
) -> Fitted:
    def log_mels(indices: list[int]) -> torch.Tensor:
        with torch.no_grad():
            stacked = stack_frames([powers[i] for i in indices], run.features.n_frames, "center").to(run.device)
            return frontend.log_mel(stacked).cpu()

    def export_model() -> ExportedModel:
        return ExportedModel(
            copy.deepcopy(frontend).cpu(), copy.deepcopy(network).cpu(), run.task.output_layer()
        ).eval()

    reads_waveforms = network_inputs(network) != "log_mel"
    return Fitted(
        cfg=run.cfg, labels=run.labels, clips=run.clips, split=split, targets=run.targets,
        waveforms={name: _clip_waveforms(run, split.indices(name)) for name in ("val", "test")
                   if split.indices(name)} if reads_waveforms else {},
        log_mels={name: log_mels(split.indices(name)) for name in ("train", "val", "test") if split.indices(name)},
        network=network, device=run.device, features=run.features, export_model=export_model, log=run.log,
        background_roles=background_roles(run.backgrounds) if run.backgrounds else None,
        calibration=calibration or {},
    )


def _run_summary(
    run: TaskRun, network: KeywordCNN, split: Split, history: list[dict[str, Any]], best_epoch: int,
    stopped_early: bool, cache_stats: dict[str, int],
) -> dict[str, Any]:
    return {
        "split": run.split_summary,
        "history": history,
        "best_epoch": best_epoch,
        "averaged_epochs": run.averaged_epochs,
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "device": str(run.device),
        "training_precision": run.precision,
        "threads": torch.get_num_threads(),
        "n_parameters": sum(parameter.numel() for parameter in network.parameters()),
        "feature_cache": cache_stats,
        "mean_epoch_seconds": float(np.mean([epoch["seconds"] for epoch in history])),
        "training_seconds": run.timings["training_seconds"],
    }


def _export(run: TaskRun, model: ExportedModel, metrics: dict[str, Any]) -> list[str]:
    generator = torch.Generator().manual_seed(run.cfg.seed)
    sample = 0.1 * torch.randn(4, run.features.clip_samples, generator=generator)
    architecture = {
        "name": " + ".join({"temporal": "TemporalCNN", "embedding": "SpeechEmbeddingClassifier"}.get(kind, "KeywordCNN")
                           for kind in architecture_kinds(run.cfg.architecture)),
        "architecture": run.cfg.architecture,
        "channels": run.cfg.channels,
        "dropout": run.cfg.dropout,
        "convs_per_block": run.cfg.convs_per_block,
        "n_parameters": metrics["n_parameters"],
    }
    config = build_config(run.labels, run.cfg.task, run.features, run.cfg.to_dict(), architecture,
                          metrics["prediction"])
    config["best_epoch"] = metrics["best_epoch"]
    try:
        return write_artifacts(run.out_dir, model, config, metrics, run.runtime.snapshot, sample, run.should_stop)
    except ExportCancelled:
        raise TrainingCancelled("training was cancelled during export") from None


# Plumbing ------------------------------------------------------------------------------------------------------

def _timed(run: TaskRun, name: str, step: Callable, *args):
    mark = time.monotonic()
    result = step(*args)
    run.timings[name] = time.monotonic() - mark
    return result


@contextmanager
def _cache_dir(configured: Path | None) -> Iterator[Path]:
    if configured is not None:
        yield Path(configured)
        return
    with tempfile.TemporaryDirectory(prefix="feature-cache-") as throwaway:
        yield Path(throwaway)


@contextmanager
def _torch_settings(threads: int, device: torch.device) -> Iterator[None]:
    """Threads and deterministic algorithms for the run; the caller's settings come back afterwards."""
    previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1], warn_only=previous[2])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
