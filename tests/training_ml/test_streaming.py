"""Streaming wake-word evaluation on constructed streams whose events are known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile
import torch

from training_app.ml.streaming import (
    StreamScores,
    calibrate_threshold,
    clip_error_rates,
    clip_score,
    count_false_accepts,
    det_curve,
    detect_events,
    false_accepts_per_hour,
    read_blocks,
    roc_curve,
    score_stream,
    smoothed,
    smoothed_stream,
    stream_from_clips,
)

RATE = 1000  # a low rate keeps minutes of stream cheap; the logic does not depend on it
WINDOW = RATE  # one-second windows
BURST_SECONDS = 0.5


def loudness_scorer(windows: torch.Tensor) -> torch.Tensor:
    """A stand-in detector: 1.0 when the window holds a whole 0.5 s loud burst, less the less of it it holds."""
    loud = (windows.abs() > 0.3).float().mean(dim=1)
    return (loud / BURST_SECONDS).clamp(max=1.0)


def quiet_stream(seconds: float, bursts: list[float] = (), seed: int = 0) -> np.ndarray:
    """Low noise with a loud 0.5 s burst (the 'utterance') starting at each time in ``bursts``."""
    rng = np.random.default_rng(seed)
    wave = (0.05 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)
    for start in bursts:
        begin = int(start * RATE)
        wave[begin : begin + int(BURST_SECONDS * RATE)] = 0.8 * np.sign(rng.standard_normal(int(BURST_SECONDS * RATE)))
    return wave


def blocks_of(wave: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    bounds = np.cumsum(sizes)
    return [part for part in np.split(wave, bounds[bounds < len(wave)]) if len(part)]


def test_scores_read_in_blocks_equal_scoring_every_window_at_once():
    wave = quiet_stream(12.34, bursts=[3.0, 7.05])
    stream = score_stream(blocks_of(wave, [777, 1, 2500, 333] * 20), loudness_scorer, RATE, WINDOW,
                          hop_seconds=0.1, batch_size=7)

    padded = np.r_[wave, np.zeros(WINDOW, dtype=np.float32)]
    starts = range(0, len(wave), 100)
    expected = [float(loudness_scorer(torch.from_numpy(padded[s : s + WINDOW])[None])[0])
                for s in starts if s == 0 or s + WINDOW - 100 < len(wave)]
    assert len(stream.scores) == 1 + int(np.ceil((len(wave) - WINDOW) / 100)) == len(expected)
    np.testing.assert_allclose(stream.scores, expected)
    assert stream.duration_seconds == pytest.approx(12.34)
    assert (stream.hop_seconds, stream.window_seconds) == (0.1, 1.0)


def test_a_stream_shorter_than_a_window_gets_one_padded_window_and_an_empty_one_none():
    short = score_stream([np.full(300, 0.9, dtype=np.float32)], loudness_scorer, RATE, WINDOW)
    empty = score_stream([], loudness_scorer, RATE, WINDOW)

    assert short.scores.tolist() == [pytest.approx(0.6)]
    assert len(empty.scores) == 0 and empty.duration_seconds == 0


def test_events_are_found_at_the_times_of_the_utterances():
    bursts = [5.0, 20.0, 41.3]
    stream = score_stream(blocks_of(quiet_stream(60, bursts), [4096] * 20), loudness_scorer, RATE, WINDOW)

    events = detect_events(stream, threshold=0.8)

    assert len(events) == 3
    for event, burst in zip(events, bursts, strict=True):
        assert event.start <= burst and burst + BURST_SECONDS <= event.end  # the event covers the utterance
        assert event.end - event.start <= 2.0
        assert burst - 0.5 <= event.peak_time <= burst + 1.0
        assert event.score == pytest.approx(1.0)
        assert event.start == pytest.approx(burst - 0.6, abs=0.11)  # first window holding 0.4 s of it


def test_pure_negative_audio_has_no_false_accepts():
    stream = score_stream([quiet_stream(120, seed=4)], loudness_scorer, RATE, WINDOW)

    assert detect_events(stream, threshold=0.5) == []
    assert false_accepts_per_hour([stream], threshold=0.5) == 0.0


def test_a_recording_read_in_two_parts_shares_no_audio_between_them(tmp_path):
    wave = quiet_stream(60, bursts=[10.0, 29.7, 45.0])  # the middle burst straddles the cut at 30 s
    path = tmp_path / "background.wav"
    soundfile.write(path, wave, RATE, subtype="FLOAT")

    first = score_stream(read_blocks(path, RATE, block_seconds=7, end_seconds=30.0), loudness_scorer, RATE, WINDOW)
    second = score_stream(read_blocks(path, RATE, block_seconds=7, start_seconds=30.0), loudness_scorer, RATE, WINDOW)

    assert first.duration_seconds == second.duration_seconds == pytest.approx(30.0)
    assert [round(event.start) for event in detect_events(first, 0.8)] == [9]
    assert [round(event.start) for event in detect_events(second, 0.8)] == [14]  # 45 s, counted from the cut
    np.testing.assert_allclose(second.scores, score_stream([wave[30 * RATE :]], loudness_scorer, RATE, WINDOW).scores)
    assert false_accepts_per_hour([first, second], 0.8) == pytest.approx(2 / (60 / 3600))


def test_a_refractory_period_counts_one_utterance_once_but_two_far_apart_twice():
    one = score_stream([quiet_stream(10, bursts=[3.0])], loudness_scorer, RATE, WINDOW)
    close = score_stream([quiet_stream(10, bursts=[3.0, 4.2])], loudness_scorer, RATE, WINDOW)
    far = score_stream([quiet_stream(10, bursts=[2.0, 6.0])], loudness_scorer, RATE, WINDOW)

    # The score stays above 0.8 for 0.7 s around each burst (8 frames): a 2 s refractory period covers it.
    assert int((one.scores >= 0.8).sum()) == 8
    assert len(detect_events(one, 0.8, refractory_seconds=2.0)) == 1
    assert len(detect_events(one, 0.8, refractory_seconds=0.5)) == 2  # too short: the utterance counts twice
    assert len(detect_events(close, 0.8, refractory_seconds=2.0)) == 1
    assert [e.start for e in detect_events(far, 0.8, refractory_seconds=2.0)] == pytest.approx([1.4, 5.4])


def test_a_detector_stuck_above_the_threshold_fires_once_per_refractory_period():
    scores = np.r_[np.zeros(10), np.ones(100), np.zeros(10)]  # 10 s above threshold at a 0.1 s hop
    stream = StreamScores(scores, hop_seconds=0.1, window_seconds=1.0, duration_seconds=12.9)

    events = detect_events(stream, 0.5, refractory_seconds=2.0)

    assert [event.start for event in events] == pytest.approx([1.0, 3.0, 5.0, 7.0, 9.0])
    assert [event.end for event in events] == pytest.approx([3.9, 5.9, 7.9, 9.9, 11.9])


def test_false_accepts_per_hour_pool_the_negative_streams():
    hour = np.zeros(36000)
    hour[[100, 5000, 20000]] = 0.9  # three isolated false accepts in the first hour
    half_hour = np.zeros(18000)
    half_hour[700] = 0.95
    streams = [StreamScores(hour, 0.1, 1.0, 3600.0), StreamScores(half_hour, 0.1, 1.0, 1800.0)]

    assert false_accepts_per_hour(streams, 0.5) == pytest.approx(4 / 1.5)
    assert false_accepts_per_hour(streams, 0.92) == pytest.approx(1 / 1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        false_accepts_per_hour(streams, 1.5)


def test_calibration_picks_the_lowest_false_reject_threshold_within_the_budget():
    two_hours = np.full(72000, 0.1)
    two_hours[[1000, 30000, 60000]] = [0.9, 0.7, 0.6]
    negatives = [StreamScores(two_hours, 0.1, 1.0, 7200.0)]
    positives = [0.65, 0.75, 0.8, 0.95]

    calibration = calibrate_threshold(positives, negatives, max_false_accepts_per_hour=0.5)

    # 0.5/h over 2 h allows one false accept: the threshold must exceed 0.7, and the lowest positive above
    # 0.7 is 0.75, so any threshold in (0.7, 0.75] rejects only 0.65; the middle is chosen.
    assert calibration.threshold == pytest.approx(0.725)
    assert calibration.false_reject_rate == 0.25
    assert (calibration.false_accepts, calibration.false_accepts_per_hour) == (1, 0.5)
    assert calibration.hours == 2.0 and calibration.met_budget
    # No false accept allowed: above 0.9, below the 0.95 positive. Ten allowed: only above the 0.1 floor.
    assert calibrate_threshold(positives, negatives, max_false_accepts_per_hour=0.0).threshold == pytest.approx(0.925)
    assert calibrate_threshold(positives, negatives, max_false_accepts_per_hour=5.0).threshold == pytest.approx(0.375)


@pytest.mark.parametrize("seed", range(6))
def test_calibration_matches_a_brute_force_search_over_every_threshold(seed):
    rng = np.random.default_rng(seed)
    negatives = [StreamScores(rng.beta(1, 6, size=n) ** 2, 0.1, 1.0, n / 10) for n in (600, 300)]
    positives = rng.beta(5, 1.5, size=20)
    hours = 900 / 10 / 3600
    budget = float(rng.choice([0, 1, 3, 10])) / hours  # allows that many false accepts

    calibration = calibrate_threshold(positives, negatives, max_false_accepts_per_hour=budget)

    candidates = np.unique(np.r_[0.0, positives, *[s.scores for s in negatives]])
    candidates = np.unique(np.r_[candidates, np.nextafter(candidates, 2.0)])
    feasible = [t for t in candidates if count_false_accepts(negatives, t) / hours <= budget + 1e-12]
    best = min(float((positives < t).mean()) for t in feasible)
    assert calibration.met_budget
    assert calibration.false_accepts_per_hour <= budget + 1e-12
    assert calibration.false_reject_rate == best
    assert calibration.false_accepts == count_false_accepts(negatives, calibration.threshold)


def test_calibration_says_when_no_threshold_meets_the_budget():
    stream = StreamScores(np.r_[np.zeros(50), np.ones(20)], 0.1, 1.0, 7.0)

    calibration = calibrate_threshold([0.99, 1.0], [stream], max_false_accepts_per_hour=0.5)

    assert calibration.threshold == 1.0 and not calibration.met_budget
    assert calibration.false_accepts == 1 and calibration.false_reject_rate == 0.5


def test_calibration_without_positives_or_negative_audio_is_refused():
    stream = StreamScores(np.zeros(10), 0.1, 1.0, 1.9)
    with pytest.raises(ValueError, match="no positive clip scores"):
        calibrate_threshold([], [stream])
    with pytest.raises(ValueError, match="no negative audio"):
        calibrate_threshold([0.9], [StreamScores(np.zeros(0), 0.1, 1.0, 0.0)])


def test_det_curve_trades_false_rejects_for_false_accepts():
    rng = np.random.default_rng(1)
    negatives = [StreamScores(rng.beta(1, 5, size=20000), 0.1, 1.0, 2000.0)]
    positives = rng.beta(5, 1, size=60)

    curve = det_curve(positives, negatives)

    thresholds = [point.threshold for point in curve]
    assert thresholds == sorted(thresholds) and thresholds[0] == 0.0 and thresholds[-1] == 1.0
    for lower, higher in itertools.pairwise(curve):
        assert lower.false_reject_rate <= higher.false_reject_rate
        assert lower.false_accepts_per_hour >= higher.false_accepts_per_hour
    assert curve[0].false_reject_rate == 0.0 and curve[-1].false_accepts_per_hour == 0.0
    assert det_curve(positives, negatives, thresholds=[0.5])[0].false_accepts_per_hour == pytest.approx(
        false_accepts_per_hour(negatives, 0.5))


def test_per_clip_rates_and_roc_curve():
    scores = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1]
    positives = [True, True, True, False, False, False]

    assert clip_error_rates(scores, positives, 0.5) == {"false_reject_rate": 1 / 3, "false_accept_rate": 1 / 3}
    assert clip_error_rates([0.7], [True], 0.5) == {"false_reject_rate": 0.0, "false_accept_rate": None}
    roc = roc_curve(scores, positives)
    assert roc["false_accept_rate"][0] == 0.0 and roc["true_accept_rate"][0] == 0.0
    assert roc["false_accept_rate"][-1] == 1.0 and roc["true_accept_rate"][-1] == 1.0
    assert roc["auc"] == pytest.approx(8 / 9)


def test_clip_score_is_the_best_window_and_short_clips_are_centred():
    long_clip = quiet_stream(4, bursts=[2.5])
    short_clip = np.full(200, 0.9, dtype=np.float32)

    assert clip_score(long_clip, loudness_scorer, WINDOW, 100) == pytest.approx(1.0)
    assert clip_score(quiet_stream(4), loudness_scorer, WINDOW, 100) == 0.0
    assert clip_score(short_clip, loudness_scorer, WINDOW, 100) == pytest.approx(0.4)


def test_a_wav_file_streams_in_blocks_like_the_same_samples_in_memory(tmp_path):
    wave = quiet_stream(30, bursts=[12.0])
    path = tmp_path / "background.wav"
    soundfile.write(path, np.stack([wave, wave], axis=1), RATE, subtype="FLOAT")  # stereo: mixed to mono

    blocks = list(read_blocks(path, RATE, block_seconds=4))
    from_file = score_stream(iter(blocks), loudness_scorer, RATE, WINDOW)

    assert max(len(block) for block in blocks) == 4 * RATE
    np.testing.assert_array_equal(np.concatenate(blocks), wave)
    np.testing.assert_allclose(from_file.scores, score_stream([wave], loudness_scorer, RATE, WINDOW).scores)
    assert len(detect_events(from_file, 0.8)) == 1


@pytest.mark.parametrize("file_rate", [8000, 22050, 44100, 48000])
def test_a_file_at_another_rate_streams_resampled_in_blocks_to_what_resampling_it_whole_gives(tmp_path, file_rate):
    """A dataset at 22.05 kHz (say) stores its background recordings at 22.05 kHz; the 16 kHz model reads them a
    block at a time, and gets the samples load_waveform gives a clip (torchaudio resampling the whole file)."""
    from training_app.ml.audio import load_waveform

    rng = np.random.default_rng(file_rate)
    path = tmp_path / "room.wav"
    soundfile.write(path, rng.uniform(-0.5, 0.5, size=(int(file_rate * 7.3) + 3, 2)), file_rate, subtype="PCM_16")
    whole = load_waveform(path, 16000).numpy()

    blocks = list(read_blocks(path, 16000, block_seconds=0.77))
    part = np.concatenate(list(read_blocks(path, 16000, block_seconds=0.5, start_seconds=1.234, end_seconds=5.0)))

    assert max(len(block) for block in blocks) <= int(0.77 * 16000)
    assert sum(len(block) for block in blocks) == len(whole)
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)
    np.testing.assert_allclose(part, whole[19744:80000], atol=1e-6)


def test_a_stream_built_from_negative_clips_joins_them_with_gaps(tmp_path):
    paths = []
    for index, seconds in enumerate([1.0, 2.5, 0.7]):
        paths.append(tmp_path / f"negative_{index}.wav")
        soundfile.write(paths[-1], np.full(int(seconds * RATE), 0.1 * (index + 1), dtype=np.float32), RATE,
                        subtype="FLOAT")

    joined = np.concatenate(list(stream_from_clips(paths, RATE, gap_seconds=0.5)))
    stream = score_stream(stream_from_clips(paths, RATE), loudness_scorer, RATE, WINDOW)

    assert len(joined) == int((1.0 + 2.5 + 0.7 + 3 * 0.5) * RATE)
    assert joined[1000:1500].tolist() == [0.0] * 500
    assert joined[1500] == pytest.approx(0.2)
    assert stream.duration_seconds == pytest.approx(4.2)
    assert false_accepts_per_hour([stream], 0.5) == 0.0


def test_results_are_plain_python_numbers_ready_for_json():
    stream = StreamScores(np.r_[np.zeros(5), np.ones(3), np.zeros(5)], 0.1, 1.0, 2.2)

    event = detect_events(stream, 0.5)[0]
    calibration = calibrate_threshold([0.9], [stream], max_false_accepts_per_hour=0.0)

    assert all(type(value) is float for value in (event.start, event.end, event.peak_time, event.score))
    assert all(type(getattr(calibration, name)) is float
               for name in ("threshold", "false_reject_rate", "false_accepts_per_hour", "hours"))
    assert type(calibration.false_accepts) is int


def test_smoothing_averages_each_score_with_the_hops_before_it_so_a_lone_spike_falls_and_a_phrase_stays():
    scores = np.zeros(30)
    scores[5] = 0.9  # a chance match for one hop
    scores[20:24] = 0.9  # a phrase: high for four hops in a row

    smooth = smoothed(scores, 3)

    np.testing.assert_allclose(smooth[:3], [0.0, 0.0, 0.0])
    assert smooth[5] == pytest.approx(0.3) and smooth[22] == pytest.approx(0.9)
    stream = smoothed_stream(StreamScores(scores, 0.1, 1.0, 3.9), 3)
    assert [round(event.start, 1) for event in detect_events(stream, 0.8)] == [2.2]
    np.testing.assert_allclose(smoothed([0.2, 0.4, 0.9], 5), [0.2, 0.3, 0.5])  # fewer hops at the start
    assert np.array_equal(smoothed(scores, 1), scores)


def test_resampling_a_long_recording_holds_only_a_block_in_memory(tmp_path):
    import tracemalloc

    path = tmp_path / "two-minutes.wav"
    with soundfile.SoundFile(path, "w", samplerate=44100, channels=2, subtype="PCM_16") as out:
        for second in range(120):  # 42 MB as float32 stereo in memory, 0.7 MB per 2 s block
            out.write(np.full((44100, 2), 0.1 * np.sin(second), dtype=np.float32))

    next(read_blocks(path, 16000, block_seconds=2))  # imports (torchaudio) before counting
    tracemalloc.start()
    try:
        samples = sum(len(block) for block in read_blocks(path, 16000, block_seconds=2))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert samples == 120 * 16000
    assert peak < 4 * 1024 * 1024
