"""Synthesis: a one-speaker text-to-speech voice trained on clips with transcripts (training_app.ml.tts).

The task owns its training loop (``fit``): sentences of any length, a text front end instead of labels, and an
exported module that takes symbol ids and returns a waveform. ``init_from`` continues from a registered voice
(fine-tuning); the worker hands its artifacts in as ``runtime.base_dir``. Voices are single-speaker by design,
so clips of several speakers are refused before the job is queued.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import Any

from ..config import TrainConfig
from ..data import ClipRecord
from .common import headline_of

TRAINS_ON = "transcript"
FINE_TUNES = True
PREDICTS = False
MIN_UTTERANCES = 5
# The preset's classifier settings do not suit a voice: these replace them (users may still override each).
DEFAULTS: dict[str, Any] = {"epochs": 200, "batch_size": 16, "learning_rate": 0.002, "channels": 128,
                            "dropout": 0.1, "early_stopping_patience": 0, "noise": False, "time_shift": False,
                            "spec_augment": False, "warp": False}
EPOCH_METRIC = ("val_mel_loss", "Validation mel loss (L1 on normalised log-mel)", False)
OUTPUT_NAME = "waveform"
MAX_TEXT_CHARACTERS = 2000


def check_config(cfg: TrainConfig) -> None:
    return None


def usable(clip: ClipRecord) -> bool:
    """Only clips with a transcript teach a voice; the others are left out and counted."""
    return bool(clip.transcript.strip())


def check_data(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    problems = []
    if len(clips) < MIN_UTTERANCES:
        have = "has one" if len(clips) == 1 else "have one"
        problems.append(f"synthesis needs at least {MIN_UTTERANCES} clips with a transcript; {len(clips)} {have}")
    speakers = sorted({clip.speaker for clip in clips if clip.speaker})
    if len(speakers) > 1:
        shown = ", ".join(repr(s) for s in speakers[:5]) + (" ..." if len(speakers) > 5 else "")
        problems.append(f"synthesis trains a single-speaker voice, but the clips have {len(speakers)} speakers "
                        f"({shown}); put one speaker's clips in a dataset of their own")
    if cfg.text_frontend == "phonemes" and shutil.which("espeak-ng") is None:
        problems.append("the phoneme front end needs espeak-ng (apt-get install -y espeak-ng); "
                        "or set text_frontend=characters")
    return problems


def labels(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    return []


def stratum(clip: ClipRecord, cfg: TrainConfig) -> str:
    return "speech"


def export_config(metrics: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    return {"max_text_characters": MAX_TEXT_CHARACTERS}


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return headline_of("val_mel_loss", "mel loss", metrics.get("val_mel_loss"), None)


def voice_config(cfg: TrainConfig):
    from ..tts.training import VoiceConfig

    return VoiceConfig(text_frontend=cfg.text_frontend, espeak_voice=cfg.espeak_voice, channels=cfg.channels,
                       dropout=cfg.dropout, epochs=cfg.epochs, batch_size=cfg.batch_size,
                       learning_rate=cfg.learning_rate, seed=cfg.seed, val_fraction=cfg.val_fraction)


def fit(run):
    """The framework's hook: train (or fine-tune) the voice with fit_voice and return the run's result."""
    import time

    from ..tts.training import Callbacks, Utterance, fit_voice, load_base_voice

    cfg = run.cfg
    base = None
    if cfg.init_from:
        if run.runtime.base_dir is None:
            raise ValueError(f"init_from={cfg.init_from}: the base voice's artifacts were not handed to the run")
        base = load_base_voice(run.runtime.base_dir, cfg.init_from)
        run.log("info", f"fine-tuning from {cfg.init_from} ({base.frontend.n_symbols} symbols)")
    utterances = [Utterance(clip.id, clip.path, clip.transcript) for clip in run.clips]
    mark = time.monotonic()
    run.report("features", 0.0, None)

    def phase(name: str) -> None:
        now = time.monotonic()
        run.timings[f"{_previous[0]}_seconds"] = now - _previous[1]
        _previous[:] = [name, now]
        run.report(name, 0.0, None)

    _previous = ["features", mark]
    callbacks = Callbacks(
        report=lambda fraction, eta, record: run.report("training", fraction, eta, epoch=record),
        log=run.log, check_stop=run.check_stop, phase=phase,
    )
    def more_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
        return {"prediction": export_config(metrics, cfg), "timings": dict(run.timings), "evaluated_on": "val",
                # The voice trains in fp32 on every device (its flows and alignment).
                "device": str(run.device), "training_precision": run.precision,
                "labels": [], "text_frontend": cfg.text_frontend, "init_from": cfg.init_from or None}

    result = fit_voice(voice_config(cfg), utterances, run.out_dir, callbacks, base, run.runtime.snapshot,
                       more_metrics, str(run.device))
    run.timings[f"{_previous[0]}_seconds"] = time.monotonic() - _previous[1]
    run.report("exporting", 1.0, 0.0)
    return run.result(result.metrics, result.files, result.best_epoch, result.export_seconds)


def artifact_files(artifacts_dir) -> list[str]:
    """What a voice's version stores: the written files and the held-out samples (no ONNX: the output length
    depends on the predicted durations)."""
    from pathlib import Path

    from ..tts.training import SAMPLES_DIR, VOICE_FILES

    root = Path(artifacts_dir)
    names = [name for name in VOICE_FILES if name != SAMPLES_DIR]
    names += sorted(p.relative_to(root).as_posix() for p in (root / SAMPLES_DIR).glob("*.wav"))
    return names
