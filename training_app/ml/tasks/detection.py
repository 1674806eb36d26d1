"""Detection (wake words): does a window of audio hold one of the positive labels? Every other clip is negative.

Training favours few false accepts the way openWakeWord and microWakeWord do, within what a dataset allows: one
sigmoid score per window; a binary cross-entropy in which all negatives together weigh ``negative_weight`` times as
much as all positives (false accepts cost more than false rejects); every non-positive label (confusable phrases,
other words, noise) as a negative; positive clips cropped only where the window holds the whole phrase
(``crop_range``); and, with background recordings, windows of the training recordings as negatives (random and
hard-mined), noise from them, and the checkpoint chosen by the validation false rejects within the false-accept
budget on the validation recording (``training_app.ml.background``).

Background recordings are never trained on as clips; ``data.background_roles`` gives each one a role (training,
validation, held out), so no figure is measured on audio that chose it.

Evaluation (``training_app.ml.streaming``) keeps calibration and report apart. The threshold is calibrated on
validation audio: the validation split's positive clips and the validation background audio (else the validation
negatives joined into a stream); it is the lowest false-reject rate whose false accepts per hour stay within
``target_fa_per_hour``. The figures reported are measured at that threshold on audio the calibration never saw: the
test split's clips (false-reject and false-accept rates, ROC) and the held-out recordings (else the test negatives
joined), over which the exported model slides every 100 ms (``stream_features`` computes each stream's spectrogram
once), counting false accepts per hour with a 2 s refractory period. Scores may be smoothed over
``smoothing_hops`` consecutive windows before any threshold applies, in evaluation and predictions alike. The
threshold is stored with the version and used by every prediction unless a request overrides it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, TrainConfig
from ..data import MIN_CLIPS_PER_LABEL, ClipRecord, holdout_problems
from .common import Fitted, headline_of, sigmoid, thin

TRAINS_ON = "label"
# Measured on the wake-word demo corpus (docs/benchmarks.md, Detection): without background windows as negatives
# ordinary speech scored as high as the wake phrase.
DEFAULTS: dict[str, Any] = {"background_negatives": 128, "hard_negatives": 64}
OUTPUT_NAME = "score"
EPOCH_METRIC = ("val_auc", "Validation ROC AUC", True)
USES_THRESHOLD = True
# The snapshot also carries the dataset's background recordings (long ordinary audio), never trained on as clips.
USES_BACKGROUND = True
# Windows of the training background recordings are trained on as negatives (``background_negatives``,
# ``hard_negatives``) and the validation recording chooses the checkpoint (``training_app.ml.background``).
TRAINS_ON_BACKGROUND = True
HOP_SECONDS = 0.1
# The speech embedding front end gives one embedding every 80 ms: its windows slide by one embedding.
EMBEDDING_HOP_SECONDS = 0.08
REFRACTORY_SECONDS = 2.0
# Scores over time returned with a prediction: at most this many points (a 10-minute file has 6000 hops).
MAX_TIMELINE_POINTS = 3000


def check_config(cfg: TrainConfig) -> None:
    if cfg.task == "detection" and not cfg.positive_label:
        raise ConfigError("positive_label", "name the label(s) to detect, comma-separated")
    if cfg.architecture == "speech_embedding" and cfg.clip_seconds < 1.25:
        raise ConfigError("clip_seconds", "the speech_embedding architecture needs windows of at least 1.25 s "
                                          f"(clip_seconds {cfg.clip_seconds:g}; 2 is openWakeWord's)")


def hop_seconds(cfg: TrainConfig) -> float:
    """How far apart the windows of a stream are scored: 100 ms, or one embedding (80 ms) for speech_embedding."""
    return EMBEDDING_HOP_SECONDS if cfg.architecture == "speech_embedding" else HOP_SECONDS


def fits_itself(cfg: TrainConfig) -> bool:
    """Whether ``fit`` trains this configuration (speech_embedding) instead of the default loop."""
    return cfg.architecture == "speech_embedding"


def fit(run):
    from ..embedding_detector import fit as fit_embedding_head

    return fit_embedding_head(run)


def usable(clip: ClipRecord) -> bool:
    return True


def is_positive(clip: ClipRecord, cfg: TrainConfig) -> bool:
    return clip.label in cfg.positive_label


def check_data(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    if not cfg.positive_label:
        return ["name the label(s) to detect (positive_label)"]
    counts = Counter(clip.label for clip in clips)
    names = ", ".join(repr(label) for label in cfg.positive_label)
    missing = [label for label in cfg.positive_label if not counts[label]]
    negatives = sum(n for label, n in counts.items() if label not in cfg.positive_label)
    if missing or not negatives:
        noun = "label" if len(cfg.positive_label) == 1 else "labels"
        problem = f"detection needs clips of the positive {noun} {names} and of at least one other label"
        if missing:
            problem += f"; none are labelled {', '.join(repr(label) for label in missing)}"
        return [problem]
    positives = sum(counts[label] for label in cfg.positive_label)
    problems = []
    for kind, count in (("positive", positives), ("negative", negatives)):
        if count < MIN_CLIPS_PER_LABEL:
            problems.append(f"detection has {count} {kind} clips, at least {MIN_CLIPS_PER_LABEL} are needed")
    if cfg.holdout_speakers:
        problems.extend(holdout_problems(
            clips, cfg.holdout_speakers, group=lambda clip: "positive" if is_positive(clip, cfg) else "negative"
        ))
    return problems


def crop_range(clip: ClipRecord, power, cfg: TrainConfig, n_frames: int) -> tuple[int, int] | None:
    """A positive clip longer than the window is cropped only where the window holds the whole phrase (a crop
    holding "hey mar" taught as the wake phrase makes "hey margo" one); negatives anywhere."""
    from ..augment import sound_offsets

    return sound_offsets(power, n_frames) if is_positive(clip, cfg) else None


def labels(clips: Sequence[ClipRecord], cfg: TrainConfig) -> list[str]:
    """The labels the version detects."""
    return list(cfg.positive_label)


def stratum(clip: ClipRecord, cfg: TrainConfig) -> str:
    """By label, so confusable phrases and noise reach every split as negatives."""
    return clip.label


def targets(clips: Sequence[ClipRecord], names: list[str], cfg: TrainConfig):
    import torch

    return torch.tensor([1.0 if clip.label in names else 0.0 for clip in clips])


def n_outputs(names: list[str]) -> int:
    return 1


def loss_function(train_targets, names: list[str], cfg: TrainConfig, device):
    """Binary cross-entropy where all negatives together weigh ``negative_weight`` times all positives."""
    import torch

    positives = float(train_targets.sum())
    negatives = float(len(train_targets) - positives)
    negative_weight = cfg.negative_weight * positives / max(negatives, 1.0)

    def weighted_bce(outputs, truth):
        weights = torch.where(truth > 0.5, 1.0, negative_weight).to(outputs.dtype)
        losses = torch.nn.functional.binary_cross_entropy_with_logits(outputs[:, 0], truth, reduction="none")
        return (losses * weights).sum() / weights.sum()

    return weighted_bce


def epoch_metrics(outputs, truth) -> dict[str, float | None]:
    from ..metrics import roc_auc

    return {"val_auc": roc_auc(outputs[:, 0].cpu().numpy(), truth.cpu().numpy() > 0.5)}


def output_layer():
    from ..model import ScoreOutput

    return ScoreOutput()


def export_config(metrics: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    return {
        "threshold": metrics["calibration"]["threshold"],
        "threshold_source": "calibrated",
        "target_fa_per_hour": cfg.target_fa_per_hour,
        "hop_seconds": hop_seconds(cfg),
        "refractory_seconds": REFRACTORY_SECONDS,
        "smoothing_hops": cfg.smoothing_hops,
        "positive_labels": list(cfg.positive_label),
    }


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    held_out = metrics.get("held_out") or metrics.get("calibration") or {}  # older versions: calibration only
    # A false-reject rate reads as a success on its own; where the false accepts at that threshold are over the
    # budget, every place that shows the headline (lists, version choices, the API, the model card) says so.
    if metrics.get("held_out"):
        over_budget = metrics["held_out"].get("within_budget") is False
    else:
        over_budget = (metrics.get("calibration") or {}).get("met_budget") is False
    name = "false rejects at the calibrated threshold" + (" (false accepts over budget)" if over_budget else "")
    return headline_of("false_reject_rate", name, held_out.get("false_reject_rate"), None)


# Evaluation ----------------------------------------------------------------------------------------------------

def evaluate(fitted: Fitted) -> dict[str, Any]:
    """Calibrate the threshold on validation audio, then report on the untouched test audio at that threshold.

    Calibration: the validation split's positive clips and the validation background audio (else the validation
    split's negative clips joined into a stream). Report: the test split's clips and the held-out recordings (else
    the test split's negative clips). Without a test split the positive clips reported on are the validation ones,
    and the metrics say so (``held_out.same_as_calibration``).
    """
    from .. import streaming

    cfg, evaluated_on = fitted.cfg, fitted.evaluated_on
    scorer = fitted.export_model()
    hop = int(round(hop_seconds(cfg) * fitted.features.sample_rate))

    def scored(split_name: str) -> tuple[list[ClipRecord], np.ndarray, np.ndarray]:
        clips = [fitted.clips[i] for i in fitted.split.indices(split_name)]
        scores = np.array([_clip_score(clip, scorer, fitted, hop) for clip in clips])
        return clips, scores, np.array([is_positive(clip, cfg) for clip in clips], dtype=bool)

    eval_clips, scores, positives = scored(evaluated_on)
    val_clips, val_scores, val_positives = scored("val") if evaluated_on != "val" else (eval_clips, scores, positives)
    calibrated_on = "val"
    if not val_positives.any():  # too few positives to reach validation: calibrate on the evaluation clips
        val_clips, val_scores, val_positives, calibrated_on = eval_clips, scores, positives, evaluated_on
    calibration_audio, report_audio = _negative_streams(
        fitted, scorer, {"val": val_clips, evaluated_on: eval_clips}, {"val": val_positives, evaluated_on: positives})
    calibration = streaming.calibrate_threshold(val_scores[val_positives], calibration_audio.scores,
                                                cfg.target_fa_per_hour, REFRACTORY_SECONDS)
    test_streams = report_audio
    threshold = calibration.threshold
    false_accepts = streaming.count_false_accepts(test_streams.scores, threshold, REFRACTORY_SECONDS)
    held_out = {
        "split": evaluated_on,
        "positives": int(positives.sum()),
        "false_reject_rate": float((scores[positives] < threshold).mean()),
        "false_accepts": false_accepts,
        "hours": test_streams.hours,
        "false_accepts_per_hour": false_accepts / test_streams.hours,
        "source": test_streams.source,
        "same_as_calibration": calibrated_on == evaluated_on,
        # Each stream on its own: a total can hide one recording (a voice, a room) that takes all the false accepts.
        # Each false accept's times too (seconds from the recording's start), to look up what was said there.
        "per_recording": [_recording_report(name, stream, threshold)
                          for name, stream in zip(test_streams.names, test_streams.scores, strict=True)],
    }
    held_out["within_budget"] = held_out["false_accepts_per_hour"] <= cfg.target_fa_per_hour + 1e-9
    held_out["det_point"] = [held_out["false_accepts_per_hour"], held_out["false_reject_rate"]]
    roc = streaming.roc_curve(scores, positives)
    det = streaming.det_curve(scores[positives], test_streams.scores, refractory_seconds=REFRACTORY_SECONDS)
    results: dict[str, Any] = {
        "task": cfg.task,
        "labels": fitted.labels,
        "positive_labels": list(cfg.positive_label),
        "evaluated_on": evaluated_on,
        "seed": cfg.seed,
        "val": {"n": len(val_scores), "roc_auc": _auc(val_scores, val_positives)},
        evaluated_on: {
            "n": len(scores), "positives": int(positives.sum()), "negatives": int((~positives).sum()),
            "roc_auc": roc["auc"], **streaming.clip_error_rates(scores, positives, threshold),
        },
        "calibration": {**asdict(calibration), "refractory_seconds": REFRACTORY_SECONDS,
                        "split": calibrated_on,
                        "positives": int(val_positives.sum()), "source": calibration_audio.source},
        "held_out": held_out,
        "stream": {"source": test_streams.source, "hours": test_streams.hours, "recordings": test_streams.recordings,
                   "from_backgrounds": bool(fitted.background_roles and fitted.background_roles.held_out),
                   "hop_seconds": hop_seconds(cfg)},
        "roc": {"auc": roc["auc"], "points": thin(list(zip(roc["false_accept_rate"], roc["true_accept_rate"],
                                                               strict=True)), 400)},
        "det": [[point.false_accepts_per_hour, point.false_reject_rate, point.threshold] for point in det],
        "baseline": _baseline(fitted, positives),
    }
    results["roc_auc"] = roc["auc"]
    results["false_reject_rate"] = held_out["false_reject_rate"]
    results["false_accepts_per_hour"] = held_out["false_accepts_per_hour"]
    fitted.log("info", f"threshold {threshold:.3f} calibrated for at most {cfg.target_fa_per_hour:g} false accepts "
                       f"per hour on {calibration.hours * 60:.1f} min of {calibration_audio.source} "
                       f"(false rejects {calibration.false_reject_rate:.1%} of {int(val_positives.sum())} "
                       f"validation positives)")
    fitted.log("info", f"at that threshold on {evaluated_on} audio: false rejects {held_out['false_reject_rate']:.1%} "
                       f"of {held_out['positives']} positives, {held_out['false_accepts_per_hour']:.2f} false accepts "
                       f"per hour on {test_streams.hours * 60:.1f} min of {test_streams.source}")
    if not calibration.met_budget:
        fitted.log("warning", "no threshold meets the false-accept budget on the calibration audio")
    return results


# A detector that fires all the time would fill the metrics with events; the count stays exact beyond this.
MAX_LISTED_EVENTS = 500


def _recording_report(name: str, stream, threshold: float) -> dict[str, Any]:
    """One held-out recording's false accepts at the threshold, with the start, end and peak time (seconds) and
    the score of each (the first ``MAX_LISTED_EVENTS``)."""
    from .. import streaming

    events = streaming.detect_events(stream, threshold, REFRACTORY_SECONDS)
    return {"name": name, "hours": stream.hours, "false_accepts": len(events),
            "events": [[round(e.start, 2), round(e.end, 2), round(e.peak_time, 2), round(e.score, 4)]
                       for e in events[:MAX_LISTED_EVENTS]]}


def _clip_score(clip: ClipRecord, scorer, fitted: Fitted, hop: int) -> float:
    """A held-out clip's score as a prediction computes it: the best window of the exported model."""
    from .. import streaming
    from ..audio import load_waveform

    wave = load_waveform(clip.path, fitted.features.sample_rate).numpy()
    return streaming.clip_score(wave, scorer, fitted.features.clip_samples, hop, fitted.cfg.smoothing_hops)


@dataclass(frozen=True)
class NegativeAudio:
    """Scored negative streams of one role (calibration or report), and where they come from in words."""

    scores: list
    source: str
    recordings: int
    names: list[str]  # one per stream: the recording's file name (and the stretch of it), or the clips' split

    @property
    def hours(self) -> float:
        return sum(stream.hours for stream in self.scores)


def _negative_streams(fitted: Fitted, scorer, clips: dict[str, list],
                      positives: dict[str, np.ndarray]) -> tuple[NegativeAudio, NegativeAudio]:
    """(calibration, report): the negative audio the threshold is calibrated on and the audio the false accepts
    per hour are reported on, never the same.

    With background recordings: the validation parts and the held-out parts (``data.background_roles``). Without:
    the validation split's and the evaluated split's negative clips joined end to end.
    """
    from .. import streaming

    rate = fitted.features.sample_rate
    roles = fitted.background_roles
    if roles is not None and roles.held_out:
        def scored(parts) -> list:
            return [_score_blocks(streaming.read_blocks(part.clip.path, rate, start_seconds=part.start,
                                                        end_seconds=part.end), scorer, fitted) for part in parts]

        def names(parts) -> list[str]:
            return [_part_name(part) for part in parts]

        return (NegativeAudio(scored(roles.validation), roles.sources["validation"], len(roles.validation),
                              names(roles.validation)),
                NegativeAudio(scored(roles.held_out), roles.sources["held_out"], len(roles.held_out),
                              names(roles.held_out)))
    audio = []
    for name in ("val", fitted.evaluated_on):
        negatives = [clip.path for clip, positive in zip(clips[name], positives[name], strict=True) if not positive]
        stream = _score_blocks(streaming.stream_from_clips(negatives, rate), scorer, fitted)
        title = "validation" if name == "val" else name
        audio.append(NegativeAudio([stream], f"the {title} split's negative clips joined end to end "
                                             "(no background recordings)", 0, [f"{title} negative clips"]))
    return audio[0], audio[1]


def _part_name(part) -> str:
    """A background part in words: its file name, and the stretch when it is not the whole recording."""
    name = Path(str(part.clip.path)).name
    if part.start or part.end is not None:
        end = f"{part.end:g}" if part.end is not None else "end"
        name += f" ({part.start:g}-{end} s)"
    return name


def _score_blocks(blocks, scorer, fitted: Fitted):
    """Scores of a stream's windows every ``HOP_SECONDS``: the stream's spectrogram computed once and shared by the
    windows (``stream_features``), the same scores as ``streaming.score_stream`` gives the exported model; then
    smoothed over ``smoothing_hops`` as predictions smooth them."""
    from ..embedding_detector import is_embedding_model
    from ..embedding_detector import stream_scores as embedding_stream_scores
    from ..stream_features import StreamWindows, stream_scores
    from ..streaming import smoothed_stream

    features = fitted.features
    if is_embedding_model(scorer):  # the stream embedded once, the head slid one embedding at a time
        scores = embedding_stream_scores(blocks, scorer, features.sample_rate, features.clip_samples, fitted.device)
    else:
        hop = int(round(HOP_SECONDS * features.sample_rate))
        scores = stream_scores(scorer, StreamWindows.compute(blocks, scorer.frontend, features, hop))
    return smoothed_stream(scores, fitted.cfg.smoothing_hops)


def _auc(scores: np.ndarray, positives: np.ndarray) -> float | None:
    from ..metrics import roc_auc

    return roc_auc(scores, positives)


def _baseline(fitted: Fitted, positives: np.ndarray) -> dict[str, Any]:
    """Logistic regression on log-mel statistics, scored on the same clips (centred, one window)."""
    import torch

    from ..baseline import LogisticBaseline, clip_statistics
    from ..metrics import roc_auc

    train_targets = fitted.targets[fitted.split.train].long()
    counts = np.bincount(train_targets.numpy(), minlength=2)
    weights = torch.tensor(counts.sum() / (2 * np.maximum(counts, 1)), dtype=torch.float32)
    model = LogisticBaseline(2).fit(clip_statistics(fitted.log_mels["train"]), train_targets, weights)
    scores = model.predict_proba(clip_statistics(fitted.log_mels[fitted.evaluated_on]))[:, 1].numpy()
    return {"description": "logistic regression on the mean and std of each log-mel band",
            "roc_auc": roc_auc(scores, positives)}


# Predictions -------------------------------------------------------------------------------------------------

def window_hop_seconds(clip_seconds: float) -> float:
    return HOP_SECONDS


def shape_prediction(outputs: np.ndarray, starts: list[float], context: dict[str, Any]) -> dict[str, Any]:
    """Events above the threshold (the version's calibrated one unless the request overrides it)."""
    from .. import streaming

    stored = context.get("prediction") or {}
    override = context.get("threshold")
    threshold = float(override if override is not None else stored.get("threshold", 0.5))
    refractory = float(stored.get("refractory_seconds", REFRACTORY_SECONDS))
    scores = streaming.smoothed(np.asarray(outputs, dtype=np.float64).reshape(-1), int(stored.get("smoothing_hops", 1)))
    hop = float(stored.get("hop_seconds", HOP_SECONDS))
    # Windows every hop; inference adds one last window ending at the end of the file when the hops miss it.
    regular = [i for i, start in enumerate(starts) if abs(start / hop - round(start / hop)) < 1e-6]
    stream = streaming.StreamScores(scores[regular], hop, context["clip_seconds"],
                                    max(context["duration"], context["clip_seconds"]))
    events = streaming.detect_events(stream, threshold, refractory)
    if scores[-1] >= threshold and len(regular) < len(scores) and not events:
        end = context["duration"]
        events = [streaming.DetectionEvent(max(0.0, end - context["clip_seconds"]), end, end, float(scores[-1]))]
    return {
        "detected": bool(events),
        "score": round(float(scores.max()), 6),
        "threshold": round(threshold, 6),
        "threshold_source": "request" if override is not None else stored.get("threshold_source", "calibrated"),
        "events": [{"start": round(e.start, 3), "end": round(e.end, 3), "score": round(e.score, 6)} for e in events],
        "scores_over_time": _timeline(scores[regular], context["clip_seconds"], hop),
    }


def _timeline(scores: np.ndarray, window_seconds: float, hop: float = HOP_SECONDS) -> dict[str, Any]:
    """The score every hop; for long files every n-th hop, so the answer stays small."""
    step = max(1, -(-len(scores) // MAX_TIMELINE_POINTS))
    return {"hop": round(hop * step, 6), "window": window_seconds,
            "scores": [round(float(score), 4) for score in scores[::step]]}


def prediction_answer(result: dict[str, Any]) -> tuple[str, float | None]:
    """What the prediction log counts and compares (registry live traffic): detected or not, and the score."""
    return ("detected" if result.get("detected") else "not detected"), result.get("score")
