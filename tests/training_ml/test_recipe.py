"""The default keyword recipe's pieces, each in a tiny real run: the residual blocks, label smoothing and mixup,
the refit on training + validation speakers (and what it reports), the presets a task tunes for itself, the open-set
rule (unsure keyword answers are unknown) and the spliced near-miss negatives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training_app.ml.audio import fit_length, load_waveform
from training_app.ml.config import PRESETS, ConfigError, TrainConfig
from training_app.ml.export import load_eager_model
from training_app.ml.model import KeywordCNN
from training_app.ml.split import split_clips
from training_app.ml.tasks import classification

from tests.audio import tone

from .conftest import TINY, write_tone_clips
from .test_train import run


def test_two_convolutions_per_block_add_a_residual_convolution_and_reload_from_the_artifacts(tmp_path):
    single, double = KeywordCNN(3, channels=8), KeywordCNN(3, channels=8, convs_per_block=2)
    conv_count = lambda net: sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())  # noqa: E731
    assert (conv_count(single), conv_count(double)) == (4, 8)
    assert double(torch.randn(2, 1, 40, 51)).shape == (2, 3)

    clips = write_tone_clips(tmp_path / "clips")
    config = TrainConfig.from_dict("quick", {**TINY, "convs_per_block": 2})
    result, _, _ = run(config, clips, tmp_path)
    config_json = json.loads((result.out_dir / "config.json").read_text())
    assert config_json["model"]["convs_per_block"] == 2
    model, _ = load_eager_model(result.out_dir)  # rebuilt with the residual blocks, or the weights would not load
    assert conv_count(model.network) == 8


def test_label_smoothing_and_mixup_train_a_classifier(tmp_path):
    clips = write_tone_clips(tmp_path / "clips", per_label=8)
    config = TrainConfig.from_dict("quick", {**TINY, "epochs": 3, "label_smoothing": 0.1, "mixup": 0.4})
    loss = classification.loss_function(torch.tensor([0, 1, 2]), ["a", "b", "c"], config, "cpu")
    assert loss.label_smoothing == pytest.approx(0.1)
    # A perfectly confident right answer still costs something under label smoothing.
    assert float(loss(torch.tensor([[20.0, -20.0, -20.0]]), torch.tensor([0]))) > 0.05

    result, _, _ = run(config, clips, tmp_path)
    losses = [epoch["train_loss"] for epoch in result.metrics["history"]]
    assert all(loss == loss and loss > 0 for loss in losses)  # finite (not NaN) and positive


def test_refit_registers_a_model_trained_on_training_and_validation_clips(tmp_path):
    clips = write_tone_clips(tmp_path / "clips", per_label=8, speakers=4)
    config = TrainConfig.from_dict("quick", {**TINY, "epochs": 3, "refit": True, "early_stopping_patience": 0})
    result, progress, logs = run(config, clips, tmp_path)
    metrics = result.metrics
    split = metrics["split"]

    refit = metrics["refit"]
    assert refit["epochs"] == metrics["best_epoch"]
    assert refit["clips"] == split["train"] + split["val"]
    assert [epoch["epoch"] for epoch in refit["history"]] == list(range(1, metrics["best_epoch"] + 1))
    assert str(split["train"] + split["val"]) in metrics["registered_model"]
    assert 0.0 <= refit["selection_test_accuracy"] <= 1.0
    assert metrics["timings"]["refit_seconds"] > 0
    assert any("refit: training a new model" in message for _, message in logs)
    # The curves are the selection run's; progress rises to 100% across both passes and never goes back.
    assert len(metrics["history"]) == metrics["epochs_run"]
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0

    # The registered model is the one the test metrics describe: its predictions give the test confusion matrix.
    test_clips = [clips[i] for i in split_clips(clips, config.val_fraction, config.test_fraction, config.seed).test]
    waves = torch.stack([fit_length(load_waveform(clip.path, 16000), 8000) for clip in test_clips])
    model, _ = load_eager_model(result.out_dir)
    with torch.no_grad():
        predicted = model(waves).argmax(dim=1).tolist()
    matrix = np.zeros((3, 3), dtype=int)
    for clip, label in zip(test_clips, predicted, strict=True):
        matrix[result.labels.index(clip.label), label] += 1
    assert matrix.tolist() == metrics["test"]["confusion_matrix"]["matrix"]


def test_refit_is_skipped_without_a_test_split_so_every_reported_score_is_on_unseen_clips(tmp_path):
    clips = write_tone_clips(tmp_path / "clips", per_label=8, speakers=4)
    config = TrainConfig.from_dict("quick", {**TINY, "refit": True, "test_fraction": 0.0})
    result, _, logs = run(config, clips, tmp_path)
    assert "refit" not in result.metrics and result.metrics["evaluated_on"] == "val"
    assert any("refit skipped" in message for _, message in logs)


def test_a_task_tunes_presets_for_itself_and_overrides_still_win(monkeypatch):
    monkeypatch.setattr(classification, "TASK_PRESETS", {"quick": {"convs_per_block": 2, "refit": True}}, raising=False)
    tuned = TrainConfig.from_dict("quick")
    assert (tuned.convs_per_block, tuned.refit, tuned.channels) == (2, True, PRESETS["quick"]["channels"])
    assert TrainConfig.from_dict("quick", {"refit": False}).refit is False
    assert TrainConfig.from_dict("quick", {"task": "regression"}).convs_per_block == 1
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("quick", {"convs_per_block": 3})
    assert caught.value.field == "convs_per_block"


def test_open_set_threshold_is_calibrated_on_validation_keywords_and_marks_unsure_predictions():
    labels = ["bottle", "noise", "table", "unknown"]
    rng = np.random.default_rng(0)
    # Validation: keyword clips answered right with top scores 0.60-0.99; unknown clips do not move the threshold.
    val_top = np.linspace(0.60, 0.99, 40)
    val = np.array([[p, 0.0, 1 - p, 0.0] if i % 2 else [1 - p, 0.0, p, 0.0] for i, p in enumerate(val_top)])
    val_truth = np.array([2 if i % 2 == 0 else 0 for i in range(40)])
    val = np.vstack([val, [[0.05, 0.0, 0.05, 0.9]] * 5])
    val_truth = np.concatenate([val_truth, [3] * 5])
    # Test: an unseen word taken for "bottle" with a low score, a confident right keyword, a right unknown.
    test = np.array([[0.5, 0.0, 0.2, 0.3], [0.95, 0.0, 0.05, 0.0], [0.1, 0.0, 0.1, 0.8]])
    test_truth = np.array([3, 0, 3])
    found = classification.open_set(labels, {"val": val, "test": test}, {"val": val_truth, "test": test_truth}, "test")

    assert found["threshold"] == pytest.approx(np.quantile(val_top, 1 - classification.OPEN_SET_KEEP), abs=1e-4)
    assert (found["unknown_label"], found["unsure"], found["wrong_answers_caught"], found["keyword_clips_lost"]) == (
        "unknown", 1, 1, 0)
    assert found["accuracy_with_rule"] == 1.0  # the unsure answer counted as unknown is right
    assert classification.open_set(["noise", "unknown"], {"val": val[:, [1, 3]]}, {"val": rng.integers(0, 2, 45)},
                                   "val") is None  # no keyword: nothing to be unsure about

    # With an unknown label the rule is on: the unsure answer is "unknown", its top score's label stays readable.
    assert found["rule"] is True and found["top_label_accuracy"] == pytest.approx(2 / 3)
    prediction = classification.export_config({"open_set": found}, None)
    assert prediction == {"unsure_below": found["threshold"], "unsure_label": "unknown"}
    context = {"labels": labels, "prediction": prediction}
    unsure = classification.shape_prediction(test[:1], [0.0], context)
    sure = classification.shape_prediction(test[1:2], [0.0], context)
    assert (unsure["label"], unsure["top_label"], unsure["unsure"]) == ("unknown", "bottle", True)
    assert (sure["label"], sure["top_label"], sure["unsure"]) == ("bottle", "bottle", False)
    assert classification.answer_indices(test, labels, found).tolist() == [3, 0, 3]
    assert "unsure" not in classification.shape_prediction(test[:1], [0.0], {"labels": labels, "prediction": {}})

    # Rule off (unsure_as_unknown=false): the answer is the top score, flagged unsure.
    off = classification.open_set(labels, {"val": val, "test": test}, {"val": val_truth, "test": test_truth}, "test",
                                  rule=False)
    assert off["rule"] is False and classification.answer_indices(test, labels, off).tolist() == [0, 0, 3]
    flagged = classification.shape_prediction(test[:1], [0.0], {"labels": labels, "prediction":
                                                                classification.export_config({"open_set": off}, None)})
    assert (flagged["label"], flagged["unsure"]) == ("bottle", True)


KEYWORDS_AND_UNKNOWN = {"high": 2400.0, "low": 300.0, "unknown": 900.0}


def test_with_an_unknown_label_the_job_scores_the_answers_predictions_give(tmp_path, monkeypatch):
    """The open-set rule end to end: the job's test confusion matrix is what the exported model's predictions answer.
    The threshold keeps only half the right validation keyword answers here, so the rule changes some answers."""
    monkeypatch.setattr(classification, "OPEN_SET_KEEP", 0.5)
    clips = write_tone_clips(tmp_path / "clips", KEYWORDS_AND_UNKNOWN, per_label=12, speakers=4)
    config = TrainConfig.from_dict("quick", {**TINY, "epochs": 3, "val_fraction": 0.25, "test_fraction": 0.25})
    result, _, _ = run(config, clips, tmp_path)
    metrics = result.metrics
    found = metrics["open_set"]
    assert found["rule"] is True and found["unknown_label"] == "unknown" and found["unsure"] > 0
    assert metrics["accuracy"] == pytest.approx(found["accuracy_with_rule"])

    test_clips = [clips[i] for i in split_clips(clips, config.val_fraction, config.test_fraction, config.seed).test]
    waves = torch.stack([fit_length(load_waveform(clip.path, 16000), 8000) for clip in test_clips])
    model, artifact_config = load_eager_model(result.out_dir)
    assert artifact_config["prediction"]["unsure_label"] == "unknown"
    context = {"labels": result.labels, "prediction": artifact_config["prediction"]}
    with torch.no_grad():
        scores = model(waves).numpy()
    answers = [classification.shape_prediction(row[None, :], [0.0], context) for row in scores]
    matrix = np.zeros((3, 3), dtype=int)
    for clip, answer in zip(test_clips, answers, strict=True):
        matrix[result.labels.index(clip.label), result.labels.index(answer["label"])] += 1
    assert matrix.tolist() == metrics["test"]["confusion_matrix"]["matrix"]
    assert sum(answer["label"] != answer["top_label"] for answer in answers) == found["unsure"]


def _word(parts: list[float], voice: float, rng: np.random.Generator) -> np.ndarray:
    """A "word" of 0.12 s tones in a row (frequencies scaled by the voice), in the middle of half a second of noise."""
    pieces = [tone(frequency * voice, 0.12, 16000, amplitude=0.5, noise=0.0, rng=rng) for frequency in parts]
    wave = 0.005 * rng.standard_normal(8000).astype(np.float32)
    word = np.concatenate(pieces)
    start = (8000 - len(word)) // 2
    wave[start : start + len(word)] += word
    return wave


def test_spliced_unknowns_join_the_start_of_one_keyword_to_the_end_of_another_never_of_two_alike():
    from training_app.ml.augment import KeywordSplicer, speech_span
    from training_app.ml.config import FeatureConfig
    from training_app.ml.features import LogMelFrontend

    words = {"rise": [400.0, 800.0, 1600.0], "fall": [3200.0, 1600.0, 800.0], "flat": [1200.0, 1200.0, 1200.0],
             "rize": [410.0, 810.0, 1610.0]}  # "rize" sounds like "rise": the one pair too alike to splice
    rng = np.random.default_rng(0)
    frontend = LogMelFrontend(FeatureConfig(clip_samples=8000))
    powers, labels, speakers = [], [], []
    for voice_index, voice in enumerate((0.9, 1.0, 1.1, 1.2)):
        for label, parts in words.items():
            with torch.no_grad():
                powers.append(frontend.mel_power(torch.from_numpy(_word(parts, voice, rng))[None])[0])
            labels.append(label)
            speakers.append(f"voice-{voice_index}")
    start, end = speech_span(powers[0])
    assert abs(start - 7) <= 2 and abs(end - 43) <= 2  # 0.36 s of tones (36 frames) in the middle of 51 frames

    splicer = KeywordSplicer(powers, labels, speakers, list(words), torch.Generator().manual_seed(0), cut=(0.5, 0.5))
    assert splicer.excluded_pairs == [("rise", "rize")]
    assert set(splicer.partners["fall"]) == {"flat", "rise", "rize"} and "rize" not in splicer.partners["rise"]

    fall = labels.index("fall")
    spliced = splicer.splice(fall)  # the start of another word said by the same voice, the end of "fall"
    assert spliced.shape == powers[fall].shape
    mel_bands = torchaudio_mel_centres(frontend)
    first, last = speech_span(spliced)
    head_band = int(spliced[:, first + 2].argmax())
    tail_band = int(spliced[:, last - 3].argmax())
    assert abs(mel_bands[tail_band] - 800 * 0.9) < 150  # the end of "fall" (voice 0.9)
    assert abs(mel_bands[head_band] - 3200 * 0.9) > 1000  # not the start of "fall"
    assert not splicer.can_splice(labels.index("rise")) or "rize" not in splicer.partners["rise"]


def torchaudio_mel_centres(frontend) -> list[float]:
    """Centre frequency (Hz) of each mel band of the front end."""
    filters = frontend.mel.mel_scale.fb  # (n_freqs, n_mels)
    frequencies = torch.linspace(0, frontend.mel.mel_scale.sample_rate / 2, filters.shape[0])
    return [float(frequencies[int(filters[:, band].argmax())]) for band in range(filters.shape[1])]


def test_spliced_and_reversed_unknowns_train_a_classifier_with_an_unknown_label(tmp_path):
    clips = write_tone_clips(tmp_path / "clips", KEYWORDS_AND_UNKNOWN, per_label=8, speakers=4)
    config = TrainConfig.from_dict("quick", {**TINY, "epochs": 2, "spliced_unknowns": 0.5, "reversed_unknowns": 0.3})
    result, _, logs = run(config, clips, tmp_path)
    assert any("spliced unknowns: 50% of keyword clips" in message for _, message in logs)
    assert all(epoch["train_loss"] > 0 for epoch in result.metrics["history"])
    assert json.loads((result.out_dir / "config.json").read_text())["train_config"]["spliced_unknowns"] == 0.5


def test_conv2d_plus_temporal_trains_one_network_of_each_kind_and_averages_their_outputs(tmp_path):
    from training_app.ml.artifacts import TORCH_EXPORT_FILE
    from training_app.ml.model import AveragedNetworks, TemporalCNN

    clips = write_tone_clips(tmp_path / "clips")
    config = TrainConfig.from_dict("quick", {**TINY, "architecture": "conv2d+temporal"})
    result, progress, logs = run(config, clips, tmp_path)
    metrics = result.metrics
    assert metrics["networks"]["kinds"] == ["conv2d", "temporal"] and len(metrics["networks"]["best_epochs"]) == 2
    assert [epoch["epoch"] for epoch in metrics["history"]] == [1, 2]  # the curves are the first network's
    assert [p.epoch["epoch"] for p in progress if p.epoch] == [1, 2]
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert any("averaging conv2d (best epoch" in message for _, message in logs)

    model, config_json = load_eager_model(result.out_dir)
    assert config_json["model"]["name"] == "KeywordCNN + TemporalCNN"
    assert isinstance(model.network, AveragedNetworks)
    first, second = model.network.networks
    assert isinstance(first, KeywordCNN) and isinstance(second, TemporalCNN)
    waves = torch.stack([fit_length(load_waveform(clip.path, 16000), 8000) for clip in clips[:4]])
    with torch.no_grad():
        features = model.frontend(waves)
        # The mean of the two networks' probabilities.
        expected = (torch.softmax(first(features), dim=-1) + torch.softmax(second(features), dim=-1)) / 2
        exported = torch.export.load(result.out_dir / TORCH_EXPORT_FILE).module()(waves)
    assert torch.allclose(model(waves), expected, atol=1e-6) and torch.allclose(exported, expected, atol=1e-5)
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("quick", {"architecture": "conv2d+temporal", "refit": True})
    assert caught.value.field == "refit"


def test_the_temporal_network_convolves_over_time_with_the_mel_bands_as_channels():
    """Its training, export and reload are covered by the conv2d+temporal test (one network of each kind)."""
    from training_app.ml.model import TemporalCNN, keyword_network

    network = TemporalCNN(3, n_mels=40, channels=24)
    assert [block.convs[0].out_channels for block in network.blocks] == [64, 96, 128]
    assert network.stem[0].in_channels == 40 and network(torch.randn(2, 1, 40, 51)).shape == (2, 3)
    # Order matters to it: a clip and the same clip backwards get different outputs (global pooling alone would not).
    network.eval()
    clip = torch.randn(1, 1, 40, 51)
    assert not torch.allclose(network(clip), network(clip.flip(-1)), atol=1e-4)
    assert isinstance(keyword_network(3, 40, "temporal", channels=8), TemporalCNN)
    assert TrainConfig.from_dict("quick", {"architecture": "temporal"}).architecture == "temporal"
    # The balanced classification default averages one of each kind; other presets and tasks keep the 2-D CNN.
    assert TrainConfig.from_dict("balanced").architecture == "conv2d+temporal+embedding"
    assert TrainConfig.from_dict("quick").architecture == TrainConfig.from_dict("thorough").architecture == "conv2d"
    assert TrainConfig.from_dict("balanced", {"task": "regression"}).architecture == "conv2d"
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict("quick", {"architecture": "transformer"})
    assert caught.value.field == "architecture"


def test_the_speech_embedding_head_trains_on_frozen_embeddings_exports_and_predicts(tmp_path):
    """architecture=embedding: only the head learns (the pretrained front end stays as shipped), the job runs on
    embeddings computed once, and the exported program and ONNX file (checked against the eager model by the export)
    give the eager model's probabilities."""
    from training_app.ml.artifacts import ONNX_FILE, TORCH_EXPORT_FILE
    from training_app.ml.model import SpeechEmbeddingClassifier
    from training_app.ml.speech_embedding import load_front_end

    clips = write_tone_clips(tmp_path / "clips", KEYWORDS_AND_UNKNOWN, per_label=8, speakers=4)
    config = TrainConfig.from_dict("quick", {**TINY, "architecture": "embedding"})
    result, progress, logs = run(config, clips, tmp_path)
    assert any("speech embedding: " in message and "4 augmented copies" in message for _, message in logs)
    assert [p.epoch["epoch"] for p in progress if p.epoch] == [1, 2]
    assert all(epoch["train_loss"] > 0 and "val_accuracy" in epoch for epoch in result.metrics["history"])

    model, config_json = load_eager_model(result.out_dir)
    assert config_json["model"]["name"] == "SpeechEmbeddingClassifier"
    assert isinstance(model.network, SpeechEmbeddingClassifier)
    shipped = load_front_end()  # the frozen layers are exactly as shipped (only the head trained)
    assert all(torch.equal(value, shipped.log_mel.state_dict()[name])
               for name, value in model.network.log_mel.state_dict().items())
    shipped_layers = shipped.embedding.layers.state_dict()
    assert all(torch.equal(value, shipped_layers[name]) for name, value in model.network.layers.state_dict().items())
    assert not any(parameter.requires_grad for parameter in model.network.layers.parameters())
    waves = torch.stack([fit_length(load_waveform(clip.path, 16000), 8000) for clip in clips[:3]])
    with torch.no_grad():
        eager = model(waves)
        exported = torch.export.load(result.out_dir / TORCH_EXPORT_FILE).module()(waves)
    assert eager.shape == (3, 3) and torch.allclose(eager.sum(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(exported, eager, atol=1e-5)
    assert (result.out_dir / ONNX_FILE).stat().st_size > 1_000_000  # the frozen front end travels inside it


def test_the_speech_embedding_joins_the_cnns_in_an_ensemble_that_reads_both_inputs(tmp_path):
    from training_app.ml.artifacts import TORCH_EXPORT_FILE
    from training_app.ml.model import AveragedNetworks, SpeechEmbeddingClassifier, TemporalCNN

    clips = write_tone_clips(tmp_path / "clips")
    config = TrainConfig.from_dict("quick", {**TINY, "architecture": "conv2d+temporal+embedding"})
    result, _, _ = run(config, clips, tmp_path)
    assert result.metrics["networks"]["kinds"] == ["conv2d", "temporal", "embedding"]
    model, config_json = load_eager_model(result.out_dir)
    assert config_json["model"]["name"] == "KeywordCNN + TemporalCNN + SpeechEmbeddingClassifier"
    assert isinstance(model.network, AveragedNetworks) and model.network.inputs == "both"
    first, second, third = model.network.networks
    assert isinstance(second, TemporalCNN) and isinstance(third, SpeechEmbeddingClassifier)
    waves = torch.stack([fit_length(load_waveform(clip.path, 16000), 8000) for clip in clips[:4]])
    with torch.no_grad():
        features = model.frontend(waves)
        expected = (torch.softmax(first(features), dim=-1) + torch.softmax(second(features), dim=-1)
                    + torch.softmax(third(waves), dim=-1)) / 3
        exported = torch.export.load(result.out_dir / TORCH_EXPORT_FILE).module()(waves)
    assert torch.allclose(model(waves), expected, atol=1e-6) and torch.allclose(exported, expected, atol=1e-5)


def test_the_speech_embedding_is_for_classification_without_a_refit():
    for overrides, field in (({"task": "regression", "architecture": "embedding"}, "architecture"),
                             ({"architecture": "embedding", "refit": True}, "refit")):
        with pytest.raises(ConfigError) as caught:
            TrainConfig.from_dict("quick", overrides)
        assert caught.value.field == field


def test_waveform_augmentation_shifts_mixes_noise_and_scales_within_range():
    from training_app.ml.augment import augment_waveforms

    generator = torch.Generator().manual_seed(0)
    waves = torch.zeros(64, 1000)
    waves[:, 450:550] = 0.5
    changed = augment_waveforms(waves, None, generator, shift=True, noise=False)
    starts = [int(torch.nonzero(row)[0]) for row in changed]
    assert min(starts) >= 350 and max(starts) <= 550 and len(set(starts)) > 10  # shifted up to 10% of the clip
    peaks = changed.abs().amax(dim=1)
    assert float(peaks.min()) >= 0.5 * 0.3 - 1e-6 and float(peaks.max()) <= 0.5 * 1.5 + 1e-6
    noisy = augment_waveforms(waves, None, generator, shift=False, noise=True)
    silent_part = noisy[:, :400].abs().amax(dim=1)
    assert 0 < int((silent_part > 0).sum()) < 64  # about half the clips get noise
    assert float(noisy.abs().max()) <= 1.0
