"""The fast path of streaming evaluation: the stream's spectrogram computed once gives the scores and events that
sliding the exported model over the waveform gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.audio import tone
from training_app.ml.config import FeatureConfig
from training_app.ml.features import LogMelFrontend
from training_app.ml.model import ExportedModel, KeywordCNN, ScoreOutput
from training_app.ml.stream_features import StreamWindows, edge_frames, stream_scores
from training_app.ml.streaming import detect_events, score_stream

RATE = 16000
FEATURES = FeatureConfig(clip_samples=8000)  # half-second windows
HOP = 1600


class PeakDetector(torch.nn.Module):
    """A tone detector: the window's highest normalised log-mel value, about 2 in noise and 5 or more with a tone."""

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (2.0 * (log_mel.amax(dim=(1, 2, 3)) - 4.0)).unsqueeze(1)


def constructed_stream(seconds: float, tones_at: list[float]) -> np.ndarray:
    rng = np.random.default_rng(3)
    wave = 0.01 * rng.standard_normal(int(seconds * RATE))
    for start in tones_at:
        burst = tone(3000.0, 0.3, RATE, amplitude=0.5, seed=int(start * 10))
        begin = int(start * RATE)
        wave[begin : begin + len(burst)] += burst
    return wave.astype(np.float32)


def blocks_of(wave: np.ndarray, size: int) -> list[np.ndarray]:
    return [wave[i : i + size] for i in range(0, len(wave), size)]


@pytest.mark.parametrize("seconds", [0.2, 0.5, 12.37])
def test_stream_computed_once_scores_every_window_as_the_exported_model_does(seconds):
    torch.manual_seed(0)
    model = ExportedModel(LogMelFrontend(FEATURES), KeywordCNN(1, channels=8), ScoreOutput()).eval()
    wave = constructed_stream(seconds, [3.0, 8.25] if seconds > 10 else [])

    slow = score_stream(blocks_of(wave, 5003), model, RATE, FEATURES.clip_samples, hop_seconds=HOP / RATE)
    windows = StreamWindows.compute(blocks_of(wave, 7919), model.frontend, FEATURES, HOP, chunk_windows=17)
    fast = stream_scores(model, windows)

    assert len(fast.scores) == len(slow.scores) == len(windows) > 0
    np.testing.assert_allclose(fast.scores, slow.scores, rtol=0, atol=1e-5)
    assert fast.duration_seconds == slow.duration_seconds and fast.hop_seconds == slow.hop_seconds
    # Each window's spectrogram is the front end's own, edge frames included.
    last = len(windows) - 1
    padded = np.r_[wave, np.zeros(FEATURES.clip_samples, dtype=np.float32)]
    own = model.frontend.mel_power(torch.from_numpy(padded[last * HOP : last * HOP + FEATURES.clip_samples])[None])
    torch.testing.assert_close(windows.powers([last]), own, rtol=1e-4, atol=1e-6)


def test_fast_scores_find_the_same_events_as_the_waveform_path():
    model = ExportedModel(LogMelFrontend(FEATURES), PeakDetector(), ScoreOutput()).eval()
    wave = constructed_stream(20.0, [2.0, 9.5, 15.1])

    slow = score_stream([wave], model, RATE, FEATURES.clip_samples, hop_seconds=HOP / RATE)
    fast = stream_scores(model, StreamWindows.compute(blocks_of(wave, 30000), model.frontend, FEATURES, HOP))

    events = detect_events(fast, 0.8, refractory_seconds=1.0)
    expected = detect_events(slow, 0.8, refractory_seconds=1.0)
    assert [(event.start, event.end) for event in events] == [(event.start, event.end) for event in expected]
    assert [event.score for event in events] == pytest.approx([event.score for event in expected], abs=1e-5)
    assert [round(event.start) for event in events] == [2, 9, 15]  # windows starting up to 0.4 s before a tone
    assert detect_events(stream_scores(model, StreamWindows.compute([constructed_stream(20.0, [])], model.frontend,
                                                                    FEATURES, HOP)), 0.8) == []


def test_edge_frames_are_those_reaching_past_the_window():
    assert edge_frames(FeatureConfig()) == (2, 2)  # n_fft 480 reaches 240 samples, 1.5 frame hops, to each side
    assert not StreamWindows.supports(FeatureConfig(), 1000)  # hops must be whole frames
