"""The synthesis model in pure PyTorch: text front end, monotonic alignment search, a tiny real voice."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
import soundfile
import torch

from training_app.ml.tts.alignment import durations_from_path, is_monotonic, monotonic_alignment
from training_app.ml.tts.frontend import TextError, TextFrontend, check_text, split_sentences
from training_app.ml.tts.training import (
    Callbacks, Utterance, VoiceConfig, VoiceTrainingError, collate, fit_voice, load_base_voice, log_mel,
    prepare_examples, step_losses,
)
from training_app.ml.tts.model import AcousticModel
from training_app.voice_corpus import generate_voice_corpus, voice_sentences

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
TINY = VoiceConfig(channels=32, encoder_layers=2, decoder_layers=2, epochs=4, batch_size=4, learning_rate=3e-3,
                   griffin_lim_iters=4, heldout_samples=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    rows = generate_voice_corpus(tmp_path_factory.mktemp("voice"), n_sentences=10, seed=3)
    return [Utterance(index, row["path"], row["transcript"]) for index, row in enumerate(rows)]


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("run") / "voice"
    epochs: list[dict] = []
    result = fit_voice(TINY, corpus, out_dir, Callbacks(report=lambda f, e, record: record and epochs.append(record)))
    return result, out_dir, epochs


# Front end ------------------------------------------------------------------------------------------------------

def test_character_front_end_puts_blanks_between_symbols_and_refuses_unseen_ones():
    frontend = TextFrontend.build(["Abc cab."], mode="characters")
    assert frontend.symbols[:2] == ("_", "~")
    ids = frontend.ids("cab")
    assert frontend.readable(ids) == ["~", "c", "~", "a", "~", "b", "~"]
    with pytest.raises(TextError, match="'z'"):
        frontend.ids("zebra")


@needs_espeak
def test_phoneme_front_end_reads_ipa_from_espeak():
    frontend = TextFrontend.build(["Hello world."], mode="phonemes", voice="en-us")
    assert "ˈ" in frontend.symbols and "h" in frontend.symbols
    assert TextFrontend.from_config(json.loads(json.dumps(frontend.to_config()))) == frontend


def test_long_text_is_split_into_sentences_and_limits_are_clear():
    assert split_sentences("One two. Three four? Five") == ["One two.", "Three four?", "Five"]
    assert all(len(part) <= 20 for part in split_sentences("word " * 30, limit=20))
    frontend = TextFrontend.build(["some words here."], mode="characters")
    assert check_text(frontend, "here. some words") == ["here.", "some words"]
    with pytest.raises(TextError, match="at most 10 are allowed"):
        check_text(frontend, "some words here", max_characters=10)
    with pytest.raises(TextError, match="empty"):
        check_text(frontend, "   ")


# Alignment ------------------------------------------------------------------------------------------------------

def _best_by_brute_force(values: torch.Tensor) -> float:
    n_symbols, n_frames = values.shape
    best = -np.inf
    for cuts in itertools.combinations(range(1, n_frames), n_symbols - 1):
        bounds = [0, *cuts, n_frames]
        best = max(best, sum(float(values[j, bounds[j] : bounds[j + 1]].sum()) for j in range(n_symbols)))
    return best


def test_monotonic_alignment_finds_the_best_path_and_respects_lengths():
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        values = torch.randn(1, 4, 9, generator=generator)
        path = monotonic_alignment(values, torch.tensor([4]), torch.tensor([9]))
        assert float((path * values).sum()) == pytest.approx(_best_by_brute_force(values[0]), abs=1e-4)
        assert is_monotonic(path[0], 4, 9)
    padded = monotonic_alignment(torch.randn(2, 5, 12, generator=generator), torch.tensor([5, 3]), torch.tensor([12, 7]))
    assert is_monotonic(padded[1], 3, 7)
    assert padded[1, 3:].sum() == 0 and padded[1, :, 7:].sum() == 0
    assert durations_from_path(padded)[1].tolist() == [*durations_from_path(padded)[1, :3].tolist(), 0.0, 0.0]
    assert (durations_from_path(padded)[0] >= 1).all()


# Training -------------------------------------------------------------------------------------------------------

@needs_espeak
def test_losses_fall_over_a_few_steps_on_one_batch(corpus):
    frontend = TextFrontend.build([u.transcript for u in corpus])
    examples, _ = prepare_examples(TINY, corpus[:4], frontend, Callbacks())
    for example in examples:
        example.mel = (example.mel + 5.0) / 2.0
    torch.manual_seed(0)
    model = AcousticModel(frontend.n_symbols, TINY.n_mels, 32, 2, 2, 0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = collate(examples)
    totals = []
    for _ in range(12):
        losses, path = step_losses(model, *batch)
        assert all(torch.isfinite(value) for value in losses.values())
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        totals.append(losses["total"].item())
    assert totals[-1] < 0.7 * totals[0]
    assert path.shape == (4, batch[0].shape[1], batch[2].shape[2])
    for row in range(4):
        assert is_monotonic(path[row], int(batch[1][row]), int(batch[3][row]))


@needs_espeak
def test_a_tiny_voice_trains_and_writes_its_artifacts(trained, corpus):
    result, out_dir, epochs = trained
    metrics = result.metrics
    assert [e["epoch"] for e in epochs] == list(range(1, TINY.epochs + 1))
    assert all(np.isfinite(e[key]) for e in epochs for key in ("train_loss", "val_loss", "val_mel_loss",
                                                                 "val_duration_error"))
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert sorted(result.files) == sorted(["config.json", "metrics.json", "model.pt2", "snapshot.json", "weights.pt",
                                           "samples/01_real.wav", "samples/01_synthesized.wav"])
    alignment = metrics["alignment"]
    assert sum(alignment["durations"]) == log_mel(TINY, torch.from_numpy(
        soundfile.read(corpus[int(alignment["clip"])].path, dtype="float32")[0])).shape[1]
    assert min(alignment["durations"]) >= 1 and len(alignment["durations"]) == len(alignment["symbols"])
    assert 1 <= len(alignment["matrix"]) <= 64 and 0 < alignment["path_confidence"] <= 1
    config = json.loads((out_dir / "config.json").read_text())
    assert config["task"] == "synthesis" and config["text_frontend"]["mode"] == "phonemes"
    assert config["text_frontend"]["symbols"][:2] == ["_", "~"]


@needs_espeak
def test_the_exported_voice_speaks_new_text(trained):
    _, out_dir, _ = trained
    sample = json.loads((out_dir / "metrics.json").read_text())["samples"][0]
    wave, rate = soundfile.read(out_dir / sample["synthesized"])
    assert rate == TINY.sample_rate and len(wave) > TINY.hop and np.abs(wave).max() > 0
    assert sample["mcd_db"] > 0
    config = json.loads((out_dir / "config.json").read_text())
    frontend = TextFrontend.from_config(config["text_frontend"])
    program = torch.export.load(out_dir / "model.pt2").module()
    for text in ("The dog.", "The old man found a red box near the river."):
        with torch.no_grad():
            waveform = program(torch.tensor([frontend.ids(text)]))
        assert waveform.ndim == 1 and waveform.dtype == torch.float32 and len(waveform) >= TINY.hop
        assert torch.isfinite(waveform).all() and float(waveform.abs().max()) <= 1.0
    # One symbol predicts fewer frames than Griffin-Lim accepts: the voice holds it for the vocoder's minimum.
    with torch.no_grad():
        shortest = program(torch.tensor([[frontend.ids("a")[0]]]))
    assert len(shortest) >= TINY.hop * 3 and torch.isfinite(shortest).all()


@needs_espeak
def test_fine_tuning_continues_from_a_voice_and_records_it(trained, corpus, tmp_path):
    _, out_dir, _ = trained
    base = load_base_voice(out_dir, "voice:v1")
    result = fit_voice(TINY.__class__(**{**TINY.__dict__, "epochs": 1}), corpus[:4], tmp_path / "tuned", base=base)
    assert result.metrics["fine_tuned_from"] == "voice:v1"
    tuned = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert tuned["text_frontend"]["symbols"][: base.frontend.n_symbols] == list(base.frontend.symbols)
    assert tuned["audio"]["mel_mean"] == base.mel_mean
    with pytest.raises(VoiceTrainingError, match="use the base voice's text front end"):
        fit_voice(TINY.__class__(**{**TINY.__dict__, "text_frontend": "characters"}), corpus[:4],
                  tmp_path / "other", base=base)


def test_mel_cepstral_distortion_is_zero_for_the_same_audio_and_grows_with_difference():
    from training_app.ml.tts.training import mel_cepstral_distortion

    generator = torch.Generator().manual_seed(0)
    time = torch.arange(16000) / 16000
    speechy = torch.sin(2 * torch.pi * 220 * time) * (1 + torch.sin(2 * torch.pi * 3 * time)) * 0.3
    assert mel_cepstral_distortion(speechy, speechy, 16000) == pytest.approx(0.0, abs=1e-6)
    slightly = speechy + 0.01 * torch.randn(16000, generator=generator)
    noise = 0.3 * torch.randn(16000, generator=generator)
    assert 0 < mel_cepstral_distortion(speechy, slightly, 16000) < mel_cepstral_distortion(speechy, noise, 16000)


def test_voice_sentences_differ_and_repeat_with_the_seed():
    sentences = voice_sentences(200, seed=1)
    assert len(set(sentences)) == 200 and sentences == voice_sentences(200, seed=1)


def test_the_intelligibility_judge_must_be_a_transcription_model(trained):
    from training_app.ml.tts.judge import Judge, judge_voice

    _, out_dir, _ = trained
    with pytest.raises(ValueError, match="is a synthesis model; a judge must be a transcription model"):
        Judge.load(out_dir, "voice:v1")
    with pytest.raises(ValueError, match="unknown renderings"):
        judge_voice(None, ["A."], {"vocoded": [np.zeros(160)]}, 16000)


@needs_espeak
def test_a_voice_lists_its_held_out_sentences(trained, corpus):
    result, _, _ = trained
    split = result.metrics["split"]
    assert len(split["val_clips"]) == split["val"] >= 1
    assert {sample["clip"] for sample in result.metrics["samples"]} <= set(split["val_clips"])
    assert set(split["val_clips"]) <= {str(u.id) for u in corpus}


@needs_espeak
def test_the_voice_keeps_the_epoch_with_the_lowest_validation_mel_loss(trained):
    result, _, epochs = trained
    losses = [epoch["val_mel_loss"] for epoch in epochs]
    assert result.best_epoch == result.metrics["best_epoch"] == losses.index(min(losses)) + 1
    assert result.metrics["val_mel_loss"] == min(losses)
