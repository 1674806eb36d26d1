"""Streaming evaluation of a wake-word detector: events, false accepts per hour, DET curve, calibration.

Pure numpy/PyTorch, no Django. The API, in the order a detection job uses it:

``read_blocks(path, sample_rate, start_seconds=0, end_seconds=None)`` / ``stream_from_clips(paths, sample_rate)``
    Iterators of mono float32 sample blocks: a long recording (or a stretch of it) read a block at a time, or
    negative test clips joined end to end into one stream when a dataset has no background recordings.
``score_stream(blocks, scorer, sample_rate, window_samples, hop_seconds=0.1) -> StreamScores``
    Slides the model's window over the stream with a fixed hop and keeps one positive score per hop (a frame).
    ``scorer`` maps a (batch, window_samples) float32 tensor to (batch,) positive scores in [0, 1]. Only a
    window plus one block and one batch are held in memory, so hours of audio stream through; the scores
    (a float per 100 ms, 36 000 per hour) are kept. ``StreamScores`` can also be built from precomputed scores:
    ``stream_features.stream_scores`` gives the same scores faster for the exported model, computing the stream's
    spectrogram once for all the windows that overlap.
``clip_score(waveform, scorer, window_samples, hop_samples)``
    One clip's score: its best window (a clip shorter than the window is zero-padded on both sides, the way
    training evaluates it).
``detect_events(stream, threshold) -> list[DetectionEvent]``
    Detections with start, end, peak time and peak score, in seconds from the stream's start.
``false_accepts_per_hour(streams, threshold)``
    Detections on negative streams divided by their total duration in hours.
``clip_error_rates`` / ``roc_curve``
    Per-clip false-reject and false-accept rates at a threshold, and the ROC curve over all thresholds.
``det_curve(positive_scores, negative_streams) -> list[DetPoint]``
    False-reject rate (per positive clip) against false accepts per hour (streaming), over thresholds.
``calibrate_threshold(positive_scores, negative_streams, max_false_accepts_per_hour=0.5) -> Calibration``
    The lowest-FRR threshold whose false accepts per hour stay within the budget, and the FRR there.

How a detection fires: the frame whose window starts at ``k * hop`` fires when its score is at least the
threshold and no detection fired within the previous ``refractory_seconds`` (default 2 s). Around one
utterance the score stays high for up to about one window length, so a refractory period longer than the
window makes one utterance count once; a detector stuck above the threshold fires again after each refractory
period, as a deployed one would. With this rule the number of detections can only fall as the threshold rises
(firing greedily at the earliest allowed frame picks the most frames spaced a refractory period apart, and a
higher threshold leaves a subset of frames), so the calibration can search the thresholds by bisection and is
exact: it tries every distinct score of the negative streams, not a grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch

from .metrics import roc_auc

DEFAULT_HOP_SECONDS = 0.1
DEFAULT_REFRACTORY_SECONDS = 2.0
DEFAULT_MAX_FALSE_ACCEPTS_PER_HOUR = 0.5
DEFAULT_BLOCK_SECONDS = 30.0
SECONDS_PER_HOUR = 3600.0

Scorer = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StreamScores:
    """One positive score per frame; frame ``k`` is the window starting at ``k * hop_seconds``."""

    scores: np.ndarray
    hop_seconds: float
    window_seconds: float
    duration_seconds: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float64).reshape(-1))
        if self.hop_seconds <= 0 or self.window_seconds <= 0 or self.duration_seconds < 0:
            raise ValueError("hop and window must be positive and the duration not negative")

    @property
    def hours(self) -> float:
        return self.duration_seconds / SECONDS_PER_HOUR


@dataclass(frozen=True)
class DetectionEvent:
    start: float
    end: float
    peak_time: float
    score: float


@dataclass(frozen=True)
class DetPoint:
    threshold: float
    false_reject_rate: float
    false_accepts_per_hour: float


@dataclass(frozen=True)
class Calibration:
    threshold: float
    false_reject_rate: float
    false_accepts: int
    false_accepts_per_hour: float
    hours: float
    max_false_accepts_per_hour: float
    met_budget: bool


# Reading streams


def read_blocks(
    path: Path | str, sample_rate: int, block_seconds: float = DEFAULT_BLOCK_SECONDS, start_seconds: float = 0.0,
    end_seconds: float | None = None,
) -> Iterator[np.ndarray]:
    """Mono float32 blocks of an audio file at ``sample_rate`` (channels averaged), never the whole file at once;
    from ``start_seconds`` to ``end_seconds`` (None: the end of the file), both in seconds of the file.

    Datasets store canonical WAVs at the dataset's rate, which need not be the model's (a 22.05 kHz dataset, a
    16 kHz model): a file at another rate is resampled a block at a time (``_resampled_blocks``), to the same
    samples as ``audio.load_waveform`` resampling the whole file gives a clip.
    """
    file_rate = soundfile.info(str(path)).samplerate
    if file_rate != sample_rate:
        yield from _resampled_blocks(path, file_rate, sample_rate, block_seconds, start_seconds, end_seconds)
        return
    block_frames = max(1, int(block_seconds * sample_rate))
    start = int(round(start_seconds * sample_rate))
    stop = None if end_seconds is None else int(round(end_seconds * sample_rate))
    for block in soundfile.blocks(str(path), blocksize=block_frames, dtype="float32", always_2d=True, start=start,
                                  stop=stop):
        yield block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]


# torchaudio.functional.resample's defaults (sinc_interp_hann), which load_waveform uses for clips.
RESAMPLE_LOWPASS_WIDTH = 6
RESAMPLE_ROLLOFF = 0.99


def _resampled_blocks(
    path: Path | str, file_rate: int, sample_rate: int, block_seconds: float, start_seconds: float,
    end_seconds: float | None,
) -> Iterator[np.ndarray]:
    """``read_blocks`` of a file at another rate: torchaudio's resampling of the whole file, a block at a time.

    torchaudio resamples in steps: reduced by their greatest common divisor, each ``orig`` input samples give
    ``new`` output samples, and the sinc filter of a step reaches ``width`` input samples beyond it on each side
    (zeros beyond the file's ends). A block of steps is resampled from the input it covers plus ``context`` input
    samples on each side (a whole number of steps, more than ``width``), so the segment's own zero padding only
    ever falls outside the file, where the whole file's falls too, and the steps kept are exactly the whole file's.
    Memory holds one block plus the context."""
    import torchaudio.functional as AF

    divisor = math.gcd(file_rate, sample_rate)
    orig, new = file_rate // divisor, sample_rate // divisor
    width = math.ceil(RESAMPLE_LOWPASS_WIDTH * orig / (min(orig, new) * RESAMPLE_ROLLOFF))
    context = orig * (math.ceil((width + orig) / orig) + 1)
    with soundfile.SoundFile(str(path)) as source:
        frames = source.frames
        total = math.ceil(new * frames / orig)  # the whole file's resampled length
        first = min(total, int(round(start_seconds * sample_rate)))
        stop = total if end_seconds is None else min(total, int(round(end_seconds * sample_rate)))
        steps_per_block = max(1, int(block_seconds * sample_rate) // new)
        step = first // new
        while step * new < stop:
            last_step = step + steps_per_block
            low, high = step * orig - context, last_step * orig + context
            source.seek(max(0, low))
            data = source.read(min(frames, high) - max(0, low), dtype="float32", always_2d=True)
            wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
            if low < 0:  # before the file: the zeros the whole file's padding holds, keeping the steps aligned
                wave = np.concatenate([np.zeros(-low, dtype=np.float32), wave])
            resampled = AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), file_rate, sample_rate).numpy()
            offset = context // orig * new
            begin, end = max(first, step * new), min(stop, last_step * new)
            yield resampled[offset + begin - step * new : offset + end - step * new]
            step = last_step


def stream_from_clips(
    paths: Iterable[Path | str], sample_rate: int, gap_seconds: float = 0.0
) -> Iterator[np.ndarray]:
    """A stand-in for background audio: clips joined end to end in the given order, ``gap_seconds`` of silence
    after each.

    Used when a dataset has no long background recordings, to measure false accepts per hour on the negative
    test clips. Windows straddle the joins as they would in a continuous recording; the stream is only as long
    as the clips together, so one false accept weighs 1/(their hours) per hour and the measure is coarse.
    """
    gap = np.zeros(int(round(gap_seconds * sample_rate)), dtype=np.float32)
    for path in paths:
        yield from read_blocks(path, sample_rate)
        if len(gap):
            yield gap


# Scoring


def score_stream(
    blocks: Iterable[np.ndarray],
    scorer: Scorer,
    sample_rate: int,
    window_samples: int,
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    batch_size: int = 64,
) -> StreamScores:
    """Score every window of a stream, ``hop_seconds`` apart.

    Windows start at ``k * hop`` for k = 0 .. K, where the last one reaches the end of the stream (zero-padded
    past it); a stream shorter than a window gets one zero-padded window, an empty one none.
    """
    hop_samples = max(1, int(round(hop_seconds * sample_rate)))
    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = 0  # stream position of buffer[0]
    next_start = 0
    total = 0
    scores: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            scores.append(_score_batch(scorer, np.stack(pending)))
            pending.clear()

    for block in blocks:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        total += len(block)
        buffer = np.concatenate([buffer, block])
        while next_start + window_samples <= buffer_start + len(buffer):
            offset = next_start - buffer_start
            pending.append(buffer[offset : offset + window_samples])
            if len(pending) >= batch_size:
                flush()
            next_start += hop_samples
        drop = min(next_start - buffer_start, len(buffer))
        buffer = buffer[drop:].copy()
        buffer_start += drop

    n_frames = 1 + math.ceil(max(total - window_samples, 0) / hop_samples) if total else 0
    while next_start < n_frames * hop_samples:
        window = np.zeros(window_samples, dtype=np.float32)
        available = buffer[max(0, next_start - buffer_start) :]
        window[: len(available)] = available[:window_samples]
        pending.append(window)
        next_start += hop_samples
    flush()
    frame_scores = np.concatenate(scores) if scores else np.zeros(0)
    return StreamScores(
        scores=frame_scores,
        hop_seconds=hop_samples / sample_rate,
        window_seconds=window_samples / sample_rate,
        duration_seconds=total / sample_rate,
    )


def clip_score(waveform: np.ndarray | torch.Tensor, scorer: Scorer, window_samples: int, hop_samples: int,
               smoothing_hops: int = 1) -> float:
    """A clip's detection score: the best of its windows, ``hop_samples`` apart (smoothed over ``smoothing_hops``
    consecutive windows, see ``smoothed``)."""
    wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if len(wave) <= window_samples:
        padded = np.zeros(window_samples, dtype=np.float32)
        offset = (window_samples - len(wave)) // 2
        padded[offset : offset + len(wave)] = wave
        return float(_score_batch(scorer, padded[None, :])[0])
    stream = score_stream([wave], scorer, 1, window_samples, hop_seconds=hop_samples)
    return float(smoothed(stream.scores, smoothing_hops).max())


def smoothed(scores: np.ndarray, hops: int) -> np.ndarray:
    """Each frame's score averaged with the ``hops - 1`` frames before it (fewer at the start): a phrase keeps a
    detector's score high for several hops in a row, a chance match often for one. Google's small-footprint keyword
    spotter smooths its posteriors over a window the same way; openWakeWord's ``patience`` asks for several frames
    in a row above the threshold. ``hops`` 1 leaves the scores as they are."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if hops <= 1 or len(scores) == 0:
        return scores
    sums = np.cumsum(np.r_[0.0, scores])
    ends = np.arange(1, len(scores) + 1)
    starts = np.maximum(ends - hops, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def smoothed_stream(stream: StreamScores, hops: int) -> StreamScores:
    """``stream`` with its scores ``smoothed`` over ``hops`` frames."""
    if hops <= 1:
        return stream
    return StreamScores(smoothed(stream.scores, hops), stream.hop_seconds, stream.window_seconds,
                        stream.duration_seconds)


def _score_batch(scorer: Scorer, windows: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        output = scorer(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)))
    scores = np.asarray(output.detach().cpu() if isinstance(output, torch.Tensor) else output, dtype=np.float64)
    if scores.shape != (len(windows),):
        raise ValueError(f"the scorer returned shape {scores.shape} for {len(windows)} windows, not ({len(windows)},)")
    return scores


# Events


def refractory_frames(stream: StreamScores, refractory_seconds: float) -> int:
    return max(1, round(refractory_seconds / stream.hop_seconds))


def firing_frames(above: np.ndarray, refractory: int) -> np.ndarray:
    """Frames where a detection fires: the first frame above the threshold, then the first one at least
    ``refractory`` frames after the previous detection, and so on."""
    candidates = np.flatnonzero(above)
    fired: list[int] = []
    position = 0
    while position < len(candidates):
        frame = int(candidates[position])
        fired.append(frame)
        position = int(np.searchsorted(candidates, frame + refractory, side="left"))
    return np.asarray(fired, dtype=np.int64)


def detect_events(
    stream: StreamScores, threshold: float, refractory_seconds: float = DEFAULT_REFRACTORY_SECONDS
) -> list[DetectionEvent]:
    """Detections on one stream. An event runs from its firing window's start to the end of the last window
    still above the threshold (within its refractory period); its score is the highest of those windows."""
    _check_threshold(threshold)
    refractory = refractory_frames(stream, refractory_seconds)
    above = stream.scores >= threshold
    events = []
    for frame in firing_frames(above, refractory):
        last = frame
        while last + 1 < min(len(above), frame + refractory) and above[last + 1]:
            last += 1
        peak = frame + int(np.argmax(stream.scores[frame : last + 1]))
        ends_at = stream.duration_seconds  # the last windows are zero-padded past the end of the stream
        events.append(DetectionEvent(
            start=float(frame * stream.hop_seconds),
            end=float(min(last * stream.hop_seconds + stream.window_seconds, ends_at)),
            peak_time=float(min(peak * stream.hop_seconds + stream.window_seconds / 2, ends_at)),
            score=float(stream.scores[peak]),
        ))
    return events


def count_false_accepts(
    streams: Sequence[StreamScores], threshold: float, refractory_seconds: float = DEFAULT_REFRACTORY_SECONDS
) -> int:
    return sum(
        len(firing_frames(stream.scores >= threshold, refractory_frames(stream, refractory_seconds)))
        for stream in streams
    )


def false_accepts_per_hour(
    streams: Sequence[StreamScores], threshold: float, refractory_seconds: float = DEFAULT_REFRACTORY_SECONDS
) -> float:
    """Detections per hour over negative streams (streams are independent: no refractory period carries over)."""
    _check_threshold(threshold)
    return count_false_accepts(streams, threshold, refractory_seconds) / _total_hours(streams)


# Per-clip rates and curves


def clip_error_rates(scores: Sequence[float], positives: Sequence[bool], threshold: float) -> dict[str, float | None]:
    """False-reject rate of the positive clips (score below the threshold) and false-accept rate of the negative
    ones (score at or above it); None for a class with no clips."""
    _check_threshold(threshold)
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    accepted = scores >= threshold
    return {
        "false_reject_rate": float((~accepted[positives]).mean()) if positives.any() else None,
        "false_accept_rate": float(accepted[~positives].mean()) if (~positives).any() else None,
    }


def roc_curve(scores: Sequence[float], positives: Sequence[bool]) -> dict:
    """ROC points (one per distinct score, from accept-nothing to accept-everything) and the area under it."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if not positives.any() or positives.all():
        raise ValueError("a ROC curve needs positive and negative clips")
    thresholds = np.r_[np.inf, np.unique(scores)[::-1]]
    accepted = scores[None, :] >= thresholds[:, None]
    return {
        "thresholds": [float(min(t, 1.0)) if np.isfinite(t) else None for t in thresholds],
        "false_accept_rate": accepted[:, ~positives].mean(axis=1).tolist(),
        "true_accept_rate": accepted[:, positives].mean(axis=1).tolist(),
        "auc": roc_auc(scores, positives),
    }


def det_curve(
    positive_scores: Sequence[float],
    negative_streams: Sequence[StreamScores],
    thresholds: Sequence[float] | None = None,
    refractory_seconds: float = DEFAULT_REFRACTORY_SECONDS,
) -> list[DetPoint]:
    """False-reject rate of the positive clips against false accepts per hour on the negative streams.

    Default thresholds: 0 to 1 in steps of 0.02, 49 quantiles of the positive scores (the FRR axis) and the 50
    highest distinct negative scores (the low FA/h end, where a detector operates).
    """
    positive_scores = _positive_scores(positive_scores)
    if thresholds is not None:
        for threshold in thresholds:
            _check_threshold(float(threshold))
    else:
        negative_scores = np.unique(np.concatenate([stream.scores for stream in negative_streams]))
        thresholds = np.unique(np.clip(np.r_[
            np.linspace(0.0, 1.0, 51), np.quantile(positive_scores, np.linspace(0.02, 0.98, 49)), negative_scores[-50:],
        ], 0.0, 1.0))
    hours = _total_hours(negative_streams)
    return [
        DetPoint(
            threshold=float(threshold),
            false_reject_rate=float((positive_scores < threshold).mean()),
            false_accepts_per_hour=count_false_accepts(negative_streams, threshold, refractory_seconds) / hours,
        )
        for threshold in sorted(float(t) for t in thresholds)
    ]


# Calibration


def calibrate_threshold(
    positive_scores: Sequence[float],
    negative_streams: Sequence[StreamScores],
    max_false_accepts_per_hour: float = DEFAULT_MAX_FALSE_ACCEPTS_PER_HOUR,
    refractory_seconds: float = DEFAULT_REFRACTORY_SECONDS,
) -> Calibration:
    """The threshold with the lowest false-reject rate whose false accepts per hour stay within the budget.

    The detections can only change at a score of the negative streams, so the search bisects over their distinct
    scores for the lowest ``v`` at which the count fits the budget; every threshold above the next lower negative
    score ``u`` fits it too. Of those, the ones up to the lowest positive score above ``u`` reject the fewest
    positives, and the threshold is the middle of that range, leaving a margin on both sides. When even a
    threshold of 1.0 exceeds the budget (negatives scored 1.0), the result is 1.0 with ``met_budget`` false.
    """
    if max_false_accepts_per_hour < 0:
        raise ValueError("the false accepts per hour budget cannot be negative")
    positive_scores = _positive_scores(positive_scores)
    hours = _total_hours(negative_streams)
    allowed = math.floor(max_false_accepts_per_hour * hours + 1e-9)
    values = np.unique(np.concatenate([stream.scores for stream in negative_streams]))

    def fits(index: int) -> bool:  # the count at threshold values[index]; past the last value nothing fires
        if index >= len(values):
            return True
        return count_false_accepts(negative_streams, values[index], refractory_seconds) <= allowed

    low, high = 0, len(values)
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    floor_score = float(values[low - 1]) if low > 0 else None  # highest negative score the threshold must exceed
    if floor_score is None:
        threshold = _middle(0.0, positive_scores, inclusive=True)
    elif floor_score >= 1.0:
        threshold = 1.0
    else:
        threshold = _middle(floor_score, positive_scores, inclusive=False)
    false_accepts = count_false_accepts(negative_streams, threshold, refractory_seconds)
    return Calibration(
        threshold=threshold,
        false_reject_rate=float((positive_scores < threshold).mean()),
        false_accepts=false_accepts,
        false_accepts_per_hour=false_accepts / hours,
        hours=hours,
        max_false_accepts_per_hour=max_false_accepts_per_hour,
        met_budget=false_accepts <= allowed,
    )


def _middle(floor: float, positive_scores: np.ndarray, inclusive: bool) -> float:
    """Halfway between ``floor`` and the lowest positive score above it (or 1.0 when there is none)."""
    above = positive_scores[positive_scores >= floor] if inclusive else positive_scores[positive_scores > floor]
    if inclusive and len(above) and above.min() == floor:
        return floor
    ceiling = float(above.min()) if len(above) else 1.0
    middle = (floor + ceiling) / 2
    return middle if middle > floor else ceiling  # floor and ceiling adjacent floats


def _positive_scores(scores: Sequence[float]) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) == 0:
        raise ValueError("no positive clip scores: the false-reject rate needs positive clips")
    return scores


def _total_hours(streams: Sequence[StreamScores]) -> float:
    hours = sum(stream.hours for stream in streams)
    if hours <= 0:
        raise ValueError("no negative audio: false accepts per hour need a stream longer than zero seconds")
    return hours


def _check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
