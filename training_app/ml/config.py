"""Training configuration: presets, validation of user overrides, and feature parameters.

This module imports neither torch nor Django, so the web process can validate a job's settings cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Bump when the feature computation changes so old cache entries are never reused.
FEATURE_VERSION = 1



class ConfigError(ValueError):
    """A configuration value is invalid; ``field`` names the offending key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000
    n_mels: int = 40
    n_fft: int = 480
    hop: int = 160
    clip_samples: int = 16000
    f_min: float = 20.0
    f_max: float = 8000.0
    top_db: float = 80.0

    @property
    def n_frames(self) -> int:
        """Frames of a clip of ``clip_samples`` samples (the STFT is centred)."""
        return self.clip_samples // self.hop + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def cache_key(self) -> str:
        payload = json.dumps({"version": FEATURE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FieldSpec:
    kind: type
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()


FIELDS: dict[str, FieldSpec] = {
    "task": FieldSpec(str, "what the model learns: classification, regression, detection or transcription"),
    "epochs": FieldSpec(int, "maximum number of passes over the training clips", 1, 1000),
    "batch_size": FieldSpec(int, "clips per optimisation step", 1, 512),
    "learning_rate": FieldSpec(float, "peak learning rate of the one-cycle schedule", 0.0, 1.0, True),
    "weight_decay": FieldSpec(float, "AdamW weight decay", 0.0, 1.0),
    "val_fraction": FieldSpec(float, "share of clips used for validation", 0.05, 0.5),
    "test_fraction": FieldSpec(float, "share of clips held back for the final test", 0.0, 0.5),
    "seed": FieldSpec(int, "random seed: the same seed and data give the same model", 0, 2**32 - 1),
    "time_shift": FieldSpec(bool, "augment by shifting clips in time"),
    "noise": FieldSpec(bool, "augment by mixing in background noise"),
    "spec_augment": FieldSpec(bool, "augment by masking frequency bands and time steps"),
    "warp": FieldSpec(
        bool, "augment by stretching time and warping the frequency axis (other speaking rates and voices)"
    ),
    "clip_seconds": FieldSpec(float, "clip length the model sees; longer clips are cropped", 0.25, 30.0),
    "early_stopping_patience": FieldSpec(
        int, "stop after this many epochs without a better validation loss (0: never stop early)", 0, 1000
    ),
    "channels": FieldSpec(int, "width of the first convolution block (later blocks are wider)", 8, 128),
    "dropout": FieldSpec(float, "dropout before the classifier layer", 0.0, 0.9),
    "convs_per_block": FieldSpec(int, "convolutions in each of the four blocks (2: a second one on a residual path)",
                                 1, 2),
    "architecture": FieldSpec(str, "the network: conv2d (2-D convolutions over the log-mel image), temporal (1-D "
                                   "convolutions over time with the mel bands as channels, TC-ResNet), embedding "
                                   "(classification: a small head on a frozen pretrained speech embedding, Google's "
                                   "speech_embedding) or several of them joined by + (trained alike, their outputs "
                                   "averaged); detection also speech_embedding (a small convolutional head on the "
                                   "frozen speech embedding, as openWakeWord)",
                              choices=("conv2d", "temporal", "embedding", "conv2d+temporal", "conv2d+embedding",
                                       "temporal+embedding", "conv2d+temporal+embedding", "speech_embedding")),
    "label_smoothing": FieldSpec(float, "classification: share of each target spread over the other labels", 0.0, 0.5),
    "mixup": FieldSpec(float, "classification: mixup strength, the Beta(a, a) of the mixing weight (0: off)", 0.0,
                       2.0),
    "reversed_unknowns": FieldSpec(float, "classification with an unknown label: share of keyword clips in each batch "
                                          "played backwards and taught as unknown (0: off)", 0.0, 0.5),
    "spliced_unknowns": FieldSpec(float, "classification with an unknown label: share of keyword clips in each batch "
                                         "replaced by the start of another keyword joined to their end (a near-miss "
                                         "word) and taught as unknown (0: off)", 0.0, 0.5),
    "unsure_as_unknown": FieldSpec(bool, "classification with an unknown label: a keyword answer under the unsure "
                                         "threshold calibrated on validation is answered (and scored) as unknown"),
    "refit": FieldSpec(bool, "classification: once validation has chosen the epoch count, train again on the "
                             "training and validation speakers together and register that model"),
    "target_far": FieldSpec(float, "classification, two labels: false-accept rate for the operating threshold", 0.0, 0.5, True),
    "holdout_speakers": FieldSpec(tuple, "speakers whose clips all go to the test split"),
    "positive_label": FieldSpec(
        tuple, "detection: the label(s) to detect, comma-separated; every other clip is a negative"
    ),
    "target_fa_per_hour": FieldSpec(
        float, "detection: false accepts per hour of ordinary audio the calibrated threshold allows", 0.0, 100.0, True
    ),
    "negative_weight": FieldSpec(
        float, "detection: how much more a false accept costs than a false reject in the loss", 0.1, 100.0
    ),
    "background_negatives": FieldSpec(
        int, "detection: random windows of the training background recordings added to every epoch as negatives "
             "(0: background audio only feeds noise augmentation)", 0, 10000
    ),
    "smoothing_hops": FieldSpec(
        int, "detection: a window's score is averaged with those of the windows before it, this many in all (100 ms "
             "apart; 1: no smoothing), before the threshold applies", 1, 10
    ),
    "hard_negatives": FieldSpec(
        int, "detection: after every epoch, this many background windows that the model scores highest are trained "
             "on again in the next epoch (hard-negative mining; 0: none)", 0, 10000
    ),
    "text_case": FieldSpec(str, "transcription: lower-case the transcripts (lower) or keep their case (keep)",
                           choices=("lower", "keep")),
    "punctuation": FieldSpec(str, "transcription: strip punctuation except apostrophes inside words (strip) "
                                  "or keep it (keep)", choices=("strip", "keep")),
    "numbers": FieldSpec(str, "transcription: keep digits as written (as_written) or spell whole numbers out "
                              "in English words (words)", choices=("as_written", "words")),
    "text_frontend": FieldSpec(str, "synthesis: read text as phonemes (espeak-ng) or as characters",
                               choices=("phonemes", "characters")),
    "espeak_voice": FieldSpec(str, "synthesis: the espeak-ng voice that turns text into phonemes (en-us, de, fr...)"),
    "trainer": FieldSpec(str, "an external trainer the administrator configured (AUDIOML_EXTERNAL_TRAINERS) to run "
                              "instead of the built-in one; empty: built-in"),
    "init_from": FieldSpec(str, "synthesis: fine-tune from a registered voice, as model:version (voice:v3) or "
                                "model:alias; empty: train from scratch"),
}

# The tasks that read a setting; a setting not named here is read by every task. Synthesis trains a voice with
# settings of its own (tasks/synthesis.py voice_config), so it reads none of the clip models' training settings.
# Transcription trains its own CTC network on whole utterances (ml/ctc.py: fixed blocks, SpecAugment and warp
# only), so the fixed-window settings (clip length, shifts, noise mixing, the keyword networks' architecture and
# convolutions per block) are the window tasks' alone.
CLIP_TASKS = ("classification", "regression", "detection", "transcription")
WINDOW_TASKS = ("classification", "regression", "detection")
SETTING_TASKS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("weight_decay", "test_fraction", "spec_augment", "warp", "early_stopping_patience",
                     "holdout_speakers"), CLIP_TASKS),
    **dict.fromkeys(("time_shift", "noise", "clip_seconds", "convs_per_block", "architecture"), WINDOW_TASKS),
    **dict.fromkeys(("label_smoothing", "mixup", "reversed_unknowns", "spliced_unknowns", "unsure_as_unknown", "refit",
                     "target_far"), ("classification",)),
    **dict.fromkeys(("positive_label", "target_fa_per_hour", "negative_weight", "background_negatives",
                     "smoothing_hops", "hard_negatives"), ("detection",)),
    **dict.fromkeys(("text_case", "punctuation", "numbers"), ("transcription",)),
    **dict.fromkeys(("text_frontend", "espeak_voice", "init_from"), ("synthesis",)),
}


def applies(name: str, task: str) -> bool:
    """Whether a job of ``task`` reads the setting ``name`` (a classification job has no wake word to detect)."""
    return task in SETTING_TASKS.get(name, (task,))


def task_only_settings(task: str) -> tuple[str, ...]:
    """The settings ``task`` alone reads, in SETTING_TASKS' order (detection: positive_label, target_fa_per_hour,
    ...): the new-job form shows those it has fields for in the task's own part."""
    return tuple(name for name, tasks in SETTING_TASKS.items() if tasks == (task,))


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 40, "early_stopping_patience": 10, "channels": 16, "learning_rate": 0.008},
    "balanced": {"epochs": 60, "early_stopping_patience": 15, "channels": 24, "learning_rate": 0.005},
    "thorough": {"epochs": 150, "early_stopping_patience": 30, "channels": 32, "learning_rate": 0.003},
}


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "balanced"
    task: str = "classification"
    epochs: int = 60
    batch_size: int = 16
    learning_rate: float = 0.005
    weight_decay: float = 0.01
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    time_shift: bool = True
    noise: bool = True
    spec_augment: bool = True
    warp: bool = True
    clip_seconds: float = 1.0
    early_stopping_patience: int = 15
    channels: int = 24
    dropout: float = 0.2
    convs_per_block: int = 1
    architecture: str = "conv2d"
    label_smoothing: float = 0.0
    mixup: float = 0.0
    reversed_unknowns: float = 0.0
    spliced_unknowns: float = 0.0
    unsure_as_unknown: bool = True
    refit: bool = False
    target_far: float = 0.01
    holdout_speakers: tuple[str, ...] = ()
    positive_label: tuple[str, ...] = ()
    target_fa_per_hour: float = 0.5
    negative_weight: float = 4.0
    background_negatives: int = 0
    hard_negatives: int = 0
    smoothing_hops: int = 1
    text_case: str = "lower"
    punctuation: str = "strip"
    numbers: str = "as_written"
    text_frontend: str = "phonemes"
    espeak_voice: str = "en-us"
    init_from: str = ""
    trainer: str = ""

    @classmethod
    def from_dict(cls, preset: str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """Build a config from a preset name plus user overrides, validating every value.

        ``overrides`` may repeat ``preset`` (as ``to_dict()`` output does) if it names the same preset.
        """
        if preset not in PRESETS:
            raise ConfigError("preset", f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        overrides = dict(overrides or {})
        if "preset" in overrides and overrides.pop("preset") != preset:
            raise ConfigError("preset", f"overrides name a different preset than {preset!r}")
        unknown = sorted(set(overrides) - set(FIELDS))
        if unknown:
            raise ConfigError(
                unknown[0], f"unknown setting {unknown[0]!r}; allowed settings are {', '.join(sorted(FIELDS))}"
            )
        from .tasks import task_module  # the task modules import this one

        task = _validate("task", overrides.get("task", cls.task))
        values: dict[str, Any] = {**task_preset(preset, task), **overrides}
        clean = {name: _validate(name, value) for name, value in values.items()}
        config = cls(preset=preset, **clean)
        config._check_consistency()
        task_module(task).check_config(config)
        return config

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["holdout_speakers"] = list(self.holdout_speakers)
        data["positive_label"] = list(self.positive_label)
        return data

    def features(self) -> FeatureConfig:
        return FeatureConfig(clip_samples=int(round(self.clip_seconds * FeatureConfig.sample_rate)))

    def _check_consistency(self) -> None:
        from .tasks import task_module

        if self.init_from and not getattr(task_module(self.task), "FINE_TUNES", False):
            raise ConfigError("init_from", f"{self.task} jobs train from scratch; only synthesis fine-tunes a version")
        if self.architecture == "speech_embedding" and self.task != "detection":
            raise ConfigError("architecture", "speech_embedding is a detection architecture")
        if self.refit and "+" in self.architecture:
            raise ConfigError("refit", f"a refit trains one network; architecture {self.architecture} trains several")
        if "embedding" in self.architecture.split("+"):
            if self.task != "classification":
                hint = "; detection takes it as architecture=speech_embedding" if self.task == "detection" else ""
                raise ConfigError("architecture", f"the speech embedding head classifies; {self.task} jobs use conv2d "
                                                  f"or temporal networks{hint}")
            if self.refit:
                raise ConfigError("refit", "a refit trains a 2-D or temporal CNN, not the speech embedding head")
        if self.val_fraction + self.test_fraction > 0.7:
            raise ConfigError(
                "test_fraction",
                f"val_fraction + test_fraction is {self.val_fraction + self.test_fraction:g}; "
                "at most 0.7 leaves enough clips for training",
            )


def task_preset(preset: str, task: str) -> dict[str, Any]:
    """What a job of ``task`` trains with on ``preset`` before any override: the general defaults, the preset's,
    the task's tuning of that preset (TASK_PRESETS) and the task's DEFAULTS, which hold whatever the preset."""
    from .tasks import task_module

    module = task_module(task)
    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig) if field.name != "preset"}
    return {**defaults, **PRESETS[preset], **getattr(module, "TASK_PRESETS", {}).get(preset, {}), **module.DEFAULTS}


def _validate(name: str, value: Any) -> Any:
    spec = FIELDS[name]
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false, got {value!r}")
        return value
    if spec.kind is str:
        from .tasks import TASKS  # the task modules import this one

        if not isinstance(value, str):
            raise ConfigError(name, f"must be a text, got {value!r}")
        if name == "task" and value not in TASKS:
            raise ConfigError(name, f"unsupported task {value!r}; supported: {', '.join(TASKS)}")
        if spec.choices and value not in spec.choices:
            raise ConfigError(name, f"must be one of {', '.join(spec.choices)}, got {value!r}")
        if name in _TEXT_PATTERNS and not _TEXT_PATTERNS[name][0].fullmatch(value.strip()):
            raise ConfigError(name, f"{_TEXT_PATTERNS[name][1]}, got {value!r}")
        return value.strip()
    if name == "positive_label":
        return _labels(value)
    if spec.kind is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(name, f"must be a list of speaker names, got {value!r}")
        if not all(isinstance(item, str) and item for item in value):
            raise ConfigError(name, "every speaker must be a non-empty string")
        return tuple(dict.fromkeys(value))
    if spec.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, f"must be a whole number, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, f"must be a number, got {value!r}")
    else:
        value = float(value)
    _check_range(name, spec, value)
    return value


_TEXT_PATTERNS = {
    "espeak_voice": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,40}"), "must be an espeak-ng voice name such as en-us"),
    "trainer": (re.compile(r"(|[A-Za-z0-9][A-Za-z0-9_.-]{0,49})"), "must be the name of a configured trainer"),
    "init_from": (re.compile(r"(|[A-Za-z0-9][A-Za-z0-9_.-]{0,99}:[A-Za-z0-9][A-Za-z0-9_.-]{0,49})"),
                  "must be model:version (voice:v3) or model:alias"),
}


def _labels(value: Any) -> tuple[str, ...]:
    """One label, a comma-separated string of labels, or a list of labels."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise ConfigError("positive_label", f"must be a label or a list of labels, got {value!r}")
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


def _check_range(name: str, spec: FieldSpec, value: float) -> None:
    low, high = spec.minimum, spec.maximum
    too_low = low is not None and (value <= low if spec.exclusive_minimum else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        lower = f"greater than {low:g}" if spec.exclusive_minimum else f"at least {low:g}"
        raise ConfigError(name, f"must be {lower} and at most {high:g}, got {value:g}")


def parse_override(name: str, text: str) -> Any:
    """Turn a command-line ``key=value`` string into a typed override (validated later by from_dict)."""
    if name not in FIELDS:
        raise ConfigError(name, f"unknown setting {name!r}; allowed settings are {', '.join(sorted(FIELDS))}")
    kind = FIELDS[name].kind
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ConfigError(name, f"must be true or false, got {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(name, f"must be a whole number, got {text!r}") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(name, f"must be a number, got {text!r}") from None
    if kind is tuple:
        return [item.strip() for item in text.split(",") if item.strip()]
    return text
