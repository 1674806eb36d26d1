"""Training and predictions on a CUDA GPU: `pytest -m gpu tests/gpu` on a machine that has one.

Skipped, with the reason, where torch sees no CUDA GPU. Self-contained and quick: every task trains a tiny model
through the worker's code path on data made here (tones; tone "sentences" for transcription and the voice, whose
character front end needs no espeak-ng), nothing touches the network, and the whole module takes well under
three minutes on one GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from registry_app import inference, synthesis
from registry_app.models import ModelVersion
from tests.audio import tone
from tests.factories import ClipFactory, DatasetFactory
from tests.tasks.conftest import add_scored_clips, centred, score_tone, spoken_dataset
from tests.training.conftest import TINY as TINY_CLASSIFIER, add_clips
from tests.training_ml.conftest import (
    TONE_SENTENCES,
    other_sound,
    sentence_transcript,
    tone_sentence,
    wake_sound,
)
from training_app import tasks
from training_app.ml.device import amp_dtype
from training_app.models import TrainingJob

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]

TINY = {"epochs": 3, "clip_seconds": 0.5, "batch_size": 4, "channels": 8, "early_stopping_patience": 0}


def classification_data():
    dataset = DatasetFactory(name="tones")
    add_clips(dataset, "low", 6, 300.0)
    add_clips(dataset, "high", 6, 1500.0)
    return dataset, TINY_CLASSIFIER, tone(320.0, 0.5)


def regression_data():
    dataset = DatasetFactory(name="ratings")
    add_scored_clips(dataset, 24)
    return dataset, TINY, score_tone(0.8)


def detection_data():
    dataset = DatasetFactory(name="wakewords")
    for index in range(10):
        speaker = f"voice-{index % 4}"
        ClipFactory(dataset=dataset, label="wake", speaker=speaker, samples=centred(wake_sound(seed=index), seed=index))
        ClipFactory(dataset=dataset, label="tone", speaker=speaker, samples=centred(other_sound(index * 3), seed=index))
    return dataset, {**TINY, "positive_label": ["wake"], "noise": False}, centred(wake_sound(seed=3), seconds=2.0)


def transcription_data():
    return spoken_dataset(), {"epochs": 4, "batch_size": 4, "learning_rate": 0.01}, tone_sentence("abc")


def synthesis_data():
    dataset = DatasetFactory(name="voice")
    for number in range(8):
        sentence = TONE_SENTENCES[number % len(TONE_SENTENCES)]
        wave = tone_sentence(sentence, seed=number, letter_seconds=0.2)
        ClipFactory(dataset=dataset, label="speech", transcript=sentence_transcript(sentence), speaker="anna",
                    samples=wave, duration=len(wave) / 16000)
    return dataset, {"epochs": 2, "batch_size": 4, "channels": 16, "text_frontend": "characters"}, "Abc. Ba."


DATA = {
    "classification": classification_data,
    "regression": regression_data,
    "detection": detection_data,
    "transcription": transcription_data,
    "synthesis": synthesis_data,
}


def predict(version: ModelVersion, sample):
    """The version's raw answer to ``sample`` on the configured INFERENCE_DEVICE, loaded afresh."""
    inference.cache.clear()
    synthesis.cache.clear()
    model = version.model
    if model.task == "synthesis":
        return synthesis.synthesize(model, sample)
    request = inference.prepare(model)
    if model.task == "transcription":
        return request.answer(np.asarray(sample, dtype=np.float32), len(sample) / 16000)
    outputs, _ = inference.window_outputs(request.loaded, np.asarray(sample, dtype=np.float32))
    return outputs


def on_inference_device(monkeypatch, settings, device: str) -> None:
    settings.INFERENCE_DEVICE = device
    monkeypatch.setattr(inference, "_device", None)


@pytest.mark.parametrize("task", list(DATA))
def test_each_task_trains_on_the_gpu_in_mixed_precision_and_predicts_there(task, db, admin_user, settings,
                                                                           monkeypatch, staff_client, api):
    settings.TRAINING_DEVICE = "auto"
    dataset, overrides, sample = DATA[task]()
    job = TrainingJob.objects.create_job(dataset, f"{task}-model", "quick", overrides, admin_user, task=task,
                                         enqueue=False)
    assert tasks.run_training_job(job.pk) == "succeeded", TrainingJob.objects.get(pk=job.pk).error
    job.refresh_from_db()

    gpu_name = torch.cuda.get_device_name(0)
    assert (job.device, job.device_name) == ("cuda:0", gpu_name)
    assert job.metrics["device"] == "cuda:0"
    amp = {torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype(torch.device("cuda", 0))]
    assert job.metrics["training_precision"] == ("fp32" if task == "synthesis" else amp)
    assert job.logs.filter(message=f"Training on GPU cuda:0 ({gpu_name}).").exists()
    page = staff_client.get(f"/training/jobs/{job.pk}/").content.decode()
    assert f"Trained on {gpu_name} (GPU <code>cuda:0</code>)" in page
    assert api.get(f"/api/jobs/{job.pk}").json()["device_name"] == gpu_name

    # The exported model predicts on the GPU (constants made while tracing moved too) as it does on the CPU.
    version = ModelVersion.objects.get(job=job)
    on_inference_device(monkeypatch, settings, "cpu")
    on_cpu = predict(version, sample)
    on_inference_device(monkeypatch, settings, "cuda")
    on_gpu = predict(version, sample)
    assert inference.inference_device() == torch.device("cuda", 0)
    if task == "synthesis":
        assert on_gpu.wav[:4] == b"RIFF" and on_gpu.seconds > 0.1
    elif task == "transcription":
        assert on_gpu["text"] == on_cpu["text"]
    else:
        np.testing.assert_allclose(on_gpu, on_cpu, atol=2e-3)
    if task == "synthesis":
        module = synthesis.cache.get(version).module
    else:
        module = inference.cache.get(version)[0].module
    assert isinstance(module, inference.OnDevice) and module.device == torch.device("cuda", 0)


def test_two_jobs_on_one_machine_take_a_gpu_each_or_share_the_last_one(db, settings, tmp_path):
    from training_app.ml.device import claim_device

    count = torch.cuda.device_count()
    claims = [claim_device("auto", tmp_path) for _ in range(count + 1)]
    try:
        assert [str(c.device) for c in claims[:count]] == [f"cuda:{i}" for i in range(count)]
        assert claims[count].note.startswith(f"shared: all {count} GPU(s)")
        assert claims[0].name == torch.cuda.get_device_name(0)
    finally:
        for held in claims:
            held.release()


def test_the_speech_embedding_ensemble_trains_on_the_gpu_and_predicts_there_as_on_the_cpu(db, admin_user, settings,
                                                                                          monkeypatch):
    """The balanced classification default (2-D CNN, temporal CNN and the head on the frozen speech embedding): the
    embedding's features are computed on the GPU and the head trains there."""
    settings.TRAINING_DEVICE = "auto"
    dataset, overrides, sample = classification_data()
    job = TrainingJob.objects.create_job(dataset, "tones-embedding", "quick",
                                         {**overrides, "architecture": "conv2d+temporal+embedding"}, admin_user,
                                         task="classification", enqueue=False)
    assert tasks.run_training_job(job.pk) == "succeeded", TrainingJob.objects.get(pk=job.pk).error
    job.refresh_from_db()
    assert job.metrics["device"] == "cuda:0"
    assert job.metrics["networks"]["kinds"] == ["conv2d", "temporal", "embedding"]
    assert job.logs.filter(message__startswith="speech embedding: ").exists()
    version = ModelVersion.objects.get(job=job)
    on_inference_device(monkeypatch, settings, "cpu")
    on_cpu = predict(version, sample)
    on_inference_device(monkeypatch, settings, "cuda")
    np.testing.assert_allclose(predict(version, sample), on_cpu, atol=2e-3)
