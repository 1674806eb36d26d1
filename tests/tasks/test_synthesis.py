"""Synthesis end to end: one speaker's clips with transcripts, the worker, a registered voice, fine-tuning."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile

from registry_app.errors import VersionAliased
from registry_app.models import ModelVersion, RegisteredModel
from tests.factories import ClipFactory, DatasetFactory
from tests.tasks.conftest import post
from training_app import tasks
from training_app.models import TrainingJob
from training_app.voice_corpus import generate_voice_corpus

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
TINY_VOICE = {"epochs": 2, "batch_size": 4, "channels": 16}


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    rows = generate_voice_corpus(tmp_path_factory.mktemp("voice"), n_sentences=8, seed=5)
    return [(soundfile.read(row["path"], dtype="float32")[0], row["transcript"]) for row in rows]


def voice_dataset(name: str, sentences, speaker: str = "anna", untranscribed: int = 0):
    dataset = DatasetFactory(name=name)
    for samples, transcript in sentences:
        ClipFactory(dataset=dataset, label="speech", speaker=speaker, transcript=transcript, samples=samples,
                    seconds=len(samples) / 16000)
    for index in range(untranscribed):
        ClipFactory(dataset=dataset, label="speech", speaker=speaker, transcript="", frequency=300.0 + index)
    return dataset


@pytest.fixture
def create(api, django_capture_on_commit_callbacks):
    def create(dataset: str, model_name: str = "voice", **overrides):
        payload = {"dataset": dataset, "model_name": model_name, "preset": "quick", "task": "synthesis",
                   "overrides": {**TINY_VOICE, **overrides}}
        with django_capture_on_commit_callbacks(execute=True):
            return post(api, "/api/jobs", payload)

    return create


def run(response) -> TrainingJob:
    assert response.status_code == 201, response.content
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert tasks.run_training_job(job.pk) == "succeeded", TrainingJob.objects.get(pk=job.pk).error
    job.refresh_from_db()
    return job


def test_a_voice_trains_through_the_worker_and_is_fine_tuned_from_its_version(db, sentences, create, admin_client,
                                                                             api):
    voice_dataset("anna", sentences, untranscribed=2)
    response = create("anna")
    assert response.json()["data"]["ignored_clips"] == 2
    job = run(response)

    version = ModelVersion.objects.get(job=job)
    assert version.model.task == "synthesis" and version.base_version is None
    names = [entry["name"] for entry in version.artifacts]
    assert "model.pt2" in names and "model.onnx" not in names and "samples/01_synthesized.wav" in names
    assert all(len(entry["sha256"]) == 64 for entry in version.artifacts)
    history = job.metrics["history"]
    assert [epoch["epoch"] for epoch in history] == [1, 2]
    assert all(np.isfinite(epoch["val_mel_loss"]) and np.isfinite(epoch["val_duration_error"]) for epoch in history)
    assert job.metrics["alignment"]["durations"] and job.metrics["samples"][0]["synthesized"].startswith("samples/")
    assert job.metrics["device"] == job.device and job.metrics["training_precision"] == "fp32"

    assert "synthesis · quick" in admin_client.get("/training/").content.decode()
    page = admin_client.get(f"/training/jobs/{job.pk}/")
    assert page.status_code == 200 and b'class="alignment-chart"' in page.content
    assert b"/models/voice/v1/artifacts/samples/01_synthesized.wav" in page.content
    text = page.content.decode()
    assert "Real · " in text and "Synthesised · " in text and ">MCD " in text  # both lengths and the distortion
    version_page = admin_client.get("/models/voice/v1/").content.decode()
    assert "text, read as phonemes (espeak-ng, voice en-us)" in version_page and "samples per clip" not in version_page
    assert "Validation mel loss: L1 distance" in admin_client.get("/models/voice/").content.decode()
    sample = admin_client.get("/models/voice/v1/artifacts/samples/01_synthesized.wav")
    assert sample.status_code == 200 and b"".join(sample.streaming_content)[:4] == b"RIFF"
    form = admin_client.get("/training/new/")
    assert b'<option value="voice:v1">voice v1</option>' in form.content

    # Fine-tune on more recordings of the same speaker: the alias is pinned to the version it names.
    from registry_app.models import Alias

    Alias.point(version.model, "production", version)
    tuned_job = run(create("anna", model_name="voice-tuned", init_from="voice:production", epochs=1))
    assert tuned_job.config["init_from"] == "voice:v1"
    tuned = ModelVersion.objects.get(job=tuned_job)
    assert tuned.base_version == version and tuned.metrics["fine_tuned_from"] == "voice:v1"
    assert api.get("/api/models/voice-tuned/versions/1").json()["base_version"] == "voice:v1"
    tuned_page = admin_client.get("/models/voice-tuned/v1/")
    assert b'Fine-tuned from</th><td><a href="/models/voice/v1/">voice v1</a>' in tuned_page.content
    Alias.objects.filter(name="production").delete()
    with pytest.raises(VersionAliased, match="voice-tuned v1 was fine-tuned from it"):
        version.delete()


def test_mixed_speakers_and_missing_transcripts_are_422_and_queue_nothing(db, sentences, create):
    mixed = voice_dataset("mixed", sentences[:4], speaker="anna")
    for samples, transcript in sentences[4:]:
        ClipFactory(dataset=mixed, speaker="ben", transcript=transcript, samples=samples, label="speech")
    response = create("mixed")
    assert response.status_code == 422
    assert "single-speaker voice, but the clips have 2 speakers ('anna', 'ben')" in response.json()["detail"]

    voice_dataset("silent", [], untranscribed=6)
    response = create("silent")
    assert response.status_code == 422
    assert "synthesis needs at least 5 clips with a transcript; 0 have one" in response.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_init_from_must_name_a_voice(db, sentences, create, api, django_capture_on_commit_callbacks):
    voice_dataset("anna", sentences[:5])
    missing = create("anna", init_from="nobody:v1")
    assert missing.status_code == 404 and "init_from" in missing.json()["detail"]
    RegisteredModel.objects.create(name="commands", task="classification")
    other = create("anna", init_from="commands:v1")
    assert other.status_code == 422 and "a synthesis job can only fine-tune a synthesis model" in other.json()["detail"]
    bad = create("anna", init_from="no colon")
    assert bad.status_code == 422 and bad.json()["detail"].startswith("init_from:")
    with django_capture_on_commit_callbacks(execute=True):
        classification = post(api, "/api/jobs", {"dataset": "anna", "model_name": "m", "preset": "quick",
                                                  "overrides": {"init_from": "voice:v1"}})
    assert classification.status_code == 422 and "only synthesis fine-tunes" in classification.json()["detail"]
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("front_end", "expected"), [("phonemes", {}), ("characters", {"text_frontend": "characters"})])
def test_the_forms_text_front_end_is_a_change_only_when_it_differs_from_the_default(front_end, expected):
    """The select always sends a value: its default (phonemes) left alone must not show as a changed setting."""
    from training_app.forms import JobForm

    DatasetFactory(name="voice-form")
    form = JobForm({"dataset": "voice-form", "model_name": "voice", "preset": "quick", "task": "synthesis",
                    "text_frontend": front_end, "espeak_voice": " ", "time_shift": "on", "noise": "on",
                    "spec_augment": "on"})
    assert form.is_valid(), form.errors
    assert form.overrides() == expected
