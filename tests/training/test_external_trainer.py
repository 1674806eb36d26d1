"""External trainers: the JSON contract with a real trainer script, through the worker; failure, garbage, cancel."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from audioml.settings import envtrainers
from registry_app.models import ModelVersion
from tests.factories import ClipFactory, DatasetFactory
from training_app import tasks
from training_app.external import (
    ExportedClip, ExternalTrainerCancelled, ExternalTrainerError, TrainerSpec, device_env, run_external_trainer,
)
from training_app.models import TrainingJob

TRAINER = str(Path(__file__).resolve().parents[2] / "scripts" / "external_trainers" / "speaking_rate.py")
SENTENCES = ["Hello there.", "A much longer sentence than the first one.", "Short.", "Medium length words here.",
             "The last sentence of this tiny voice dataset is the longest one of all of them."]


def spec(name: str, *flags: str, **options) -> TrainerSpec:
    return TrainerSpec(name, (sys.executable, TRAINER, "--epochs", "3", *flags), **options)


@pytest.fixture
def trainers(settings):
    settings.EXTERNAL_TRAINERS = {
        "rate": spec("rate"), "failing": spec("failing", "--fail"), "garbage": spec("garbage", "--garbage"),
        "hanging": spec("hanging", "--hang", silence_timeout=600.0),
        "labels-only": TrainerSpec("labels-only", (sys.executable, TRAINER), "labels", ("classification",)),
    }
    return settings.EXTERNAL_TRAINERS


@pytest.fixture
def sentences_dataset(db):
    dataset = DatasetFactory(name="anna")
    for index, text in enumerate(SENTENCES):
        ClipFactory(dataset=dataset, label="speech", speaker="anna", transcript=text, seconds=0.2 + 0.05 * len(text))
    return dataset


def create_job(api, django_capture_on_commit_callbacks, trainer: str):
    body = {"dataset": "anna", "model_name": "rate-voice", "preset": "quick", "task": "synthesis",
            "overrides": {"trainer": trainer}}
    with django_capture_on_commit_callbacks(execute=True):
        return api.post("/api/jobs", json.dumps(body), content_type="application/json")


def test_an_external_trainer_runs_through_the_worker_and_its_output_becomes_a_version(
        trainers, sentences_dataset, api, django_capture_on_commit_callbacks, admin_client):
    response = create_job(api, django_capture_on_commit_callbacks, "rate")
    assert response.status_code == 201, response.content
    job = TrainingJob.objects.get()
    assert tasks.run_training_job(job.pk) == "succeeded", TrainingJob.objects.get().error
    job.refresh_from_db()
    assert [epoch["epoch"] for epoch in job.epochs] == [1, 2, 3]
    assert job.epochs[-1]["train_loss"] <= job.epochs[0]["train_loss"]
    assert job.metrics["trainer"] == "rate" and job.metrics["clips"] == 5 and job.metrics["seconds_per_character"] > 0
    assert job.logs.filter(message="5 clips read").exists()
    version = ModelVersion.objects.get(job=job)
    names = sorted(entry["name"] for entry in version.artifacts)
    assert names == ["config.json", "metrics.json", "model.json", "snapshot.json"]
    assert all(len(entry["sha256"]) == 64 for entry in version.artifacts)
    from django.core.files.storage import default_storage

    with default_storage.open(version.artifact("config.json")["path"]) as handle:
        config = json.loads(handle.read())
    assert config["trainer"] == "rate" and config["layout"] == "ljspeech" and config["task"] == "synthesis"
    assert b"External trainer" in admin_client.get(f"/training/jobs/{job.pk}/").content
    page = admin_client.get("/models/rate-voice/v1/")
    assert page.status_code == 200 and b"Made by the external trainer <code>rate</code>" in page.content
    spoken = api.post("/api/models/rate-voice/synthesize", json.dumps({"text": "hello"}),
                      content_type="application/json")
    assert spoken.status_code == 422 and "external trainer" in spoken.json()["detail"]


@pytest.mark.parametrize(("trainer", "message"), [
    ("failing", "exited with status 3; last lines:"),
    ("garbage", "wrote no metrics.json"),
])
def test_a_failing_or_garbled_trainer_fails_the_job_with_its_last_lines_and_registers_nothing(
        trainers, sentences_dataset, api, django_capture_on_commit_callbacks, trainer, message):
    create_job(api, django_capture_on_commit_callbacks, trainer)
    job = TrainingJob.objects.get()
    assert tasks.run_training_job(job.pk) == "failed"
    job.refresh_from_db()
    assert message in job.error
    if trainer == "failing":
        assert "out of memory while allocating the decoder" in job.error
    else:
        assert job.logs.filter(message__contains="[stdout] {this is not json either").exists()
    assert not ModelVersion.objects.exists() and not job.working_dir().exists()


def test_cancelling_stops_the_trainer(trainers, sentences_dataset, api, django_capture_on_commit_callbacks):
    create_job(api, django_capture_on_commit_callbacks, "hanging")
    job = TrainingJob.objects.get()
    TrainingJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    assert tasks.run_training_job(job.pk) == "cancelled"
    assert not ModelVersion.objects.exists()


def _clips(tmp_path) -> list[ExportedClip]:
    import numpy as np
    import soundfile

    clips = []
    for index, text in enumerate(SENTENCES):
        path = tmp_path / f"{index}.wav"
        soundfile.write(path, np.zeros(int(16000 * (0.2 + 0.05 * len(text))), dtype=np.float32), 16000)
        clips.append(ExportedClip(index, path, "speech", text))
    return clips


def test_a_hanging_trainer_gets_sigterm_on_cancel_and_on_silence(tmp_path):
    progress: list = []
    with pytest.raises(ExternalTrainerCancelled):
        run_external_trainer(spec("hanging", "--hang"), "synthesis", _clips(tmp_path), {}, 16000, tmp_path / "out",
                             lambda fraction, record: progress.append(record), lambda level, message: None,
                             should_stop=lambda: bool(progress))
    assert progress and not (tmp_path / "out").exists()
    with pytest.raises(ExternalTrainerError, match="printed nothing for 1 s and was stopped"):
        run_external_trainer(spec("hanging", "--hang", silence_timeout=1.0), "synthesis", _clips(tmp_path), {},
                             16000, tmp_path / "out", lambda *args: None, lambda *args: None, lambda: False)


def test_unknown_trainers_and_trainers_of_other_tasks_are_422(
        trainers, sentences_dataset, api, django_capture_on_commit_callbacks):
    unknown = create_job(api, django_capture_on_commit_callbacks, "nope")
    assert unknown.status_code == 422 and "no external trainer named 'nope'" in unknown.json()["detail"]
    other = create_job(api, django_capture_on_commit_callbacks, "labels-only")
    assert other.status_code == 422 and "'labels-only' trains classification, not synthesis" in other.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_the_trainers_setting_is_checked_at_start(monkeypatch):
    monkeypatch.setenv("AUDIOML_EXTERNAL_TRAINERS", '{"piper": {"command": "piper train"}}')
    with pytest.raises(ImproperlyConfigured, match="must be a list of strings"):
        envtrainers("AUDIOML_EXTERNAL_TRAINERS")
    monkeypatch.setenv("AUDIOML_EXTERNAL_TRAINERS", "{not json")
    with pytest.raises(ImproperlyConfigured, match="not valid JSON"):
        envtrainers("AUDIOML_EXTERNAL_TRAINERS")
    monkeypatch.setenv("AUDIOML_EXTERNAL_TRAINERS", '{"piper": {"command": ["python3", "t.py"], "layout": "labels"}}')
    assert envtrainers("AUDIOML_EXTERNAL_TRAINERS")["piper"].layout == "labels"


def test_the_new_job_form_offers_the_configured_trainers(trainers, sentences_dataset, admin_client):
    page = admin_client.get("/training/new/")
    assert b'<option value="rate">rate (external: synthesis)</option>' in page.content
    response = admin_client.post("/training/new/", {"dataset": "anna", "model_name": "rate-voice", "task": "synthesis",
                                                     "preset": "quick", "trainer": "labels-only"})
    assert b"trains classification, not synthesis" in response.content and not TrainingJob.objects.exists()


def test_a_trainer_sees_only_the_gpu_its_job_claimed():
    assert device_env("cuda:2") == {"CUDA_VISIBLE_DEVICES": "2"}
    assert device_env("cpu") == {"CUDA_VISIBLE_DEVICES": ""}
