"""Regression end to end: job with scores, the worker, the registered version, predictions with a score."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django_q.models import OrmQ

from datasets_app.models import Clip
from registry_app.errors import TaskMismatch
from registry_app.models import ModelVersion, RegisteredModel
from tests.audio import wav_bytes, write_wav
from tests.factories import DatasetFactory, TrainingJobFactory
from tests.tasks.conftest import add_scored_clips, copy_artifacts, score_tone
from training_app import tasks
from training_app.models import TrainingJob
from registry_app.models import PredictionLog


@pytest.fixture
def trained(scored, create):
    """A regression job trained by the worker code path and registered as version 1 of "rating"."""
    response = create("ratings", "regression", model_name="rating")
    assert response.status_code == 201, response.content
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert tasks.run_training_job(job.pk) == "succeeded", job.error
    job.refresh_from_db()
    return job


def upload(name: str, score: float, seconds: float = 0.5):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, wav_bytes(score_tone(score, seconds)), content_type="audio/wav")


def test_regression_job_freezes_the_scores_and_counts_clips_without_one(scored, create):
    response = create("ratings", "regression")

    assert response.status_code == 201, response.content
    body = response.json()
    job = TrainingJob.objects.get()
    assert body["task"] == job.task == "regression"
    assert body["snapshot_clips"] == 24 and body["data"]["ignored_clips"] == 3
    assert body["data"]["scores"]["min"] == 0.0 and body["data"]["scores"]["max"] == 1.0
    assert sorted(entry["score"] for entry in job.snapshot)[:2] == [0.0, round(1 / 23, 4)]
    assert job.config["noise"] is False
    # Later edits of a score never change the job, and they change the hash of a new snapshot.
    Clip.objects.filter(pk=job.snapshot[0]["id"]).update(score=0.99)
    job.refresh_from_db()
    assert job.snapshot[0]["score"] == 0.0
    again = create("ratings", "regression").json()
    assert again["snapshot_hash"] != job.snapshot_hash


def test_regression_without_enough_scores_is_422_and_queues_nothing(db, create):
    dataset = DatasetFactory(name="few")
    add_scored_clips(dataset, 12, unscored=5)

    response = create("few", "regression")

    assert response.status_code == 422
    assert response.json()["problems"] == ["regression needs at least 20 clips with a score; 12 have one"]
    assert TrainingJob.objects.count() == 0 and OrmQ.objects.count() == 0


def test_regression_refuses_a_threshold(db, api):
    RegisteredModel.objects.create(name="rating", task="regression")
    response = api.post("/api/models/rating/predict", {"files": [upload("a.wav", 0.5)], "threshold": "0.5"})
    assert response.status_code == 422
    assert response.json()["field"] == "threshold"


def test_worker_trains_regression_it_predicts_shows_its_charts_and_the_model_keeps_its_task(
        trained, api, admin_client, create, tmp_path):
    """One training run for everything a trained regression model must do (each check trained its own before)."""
    metrics = trained.metrics
    assert trained.task == "regression"
    assert {"mae", "rmse", "pearson", "spearman", "baseline", "mean_reference", "points"} <= set(metrics)
    assert [set(epoch) >= {"val_mae", "val_loss"} for epoch in trained.epochs] == [True] * 3
    version = ModelVersion.objects.get(job=trained)
    assert version.model.task == "regression" and version.labels == []
    assert version.headline_metric()[0] == f"{metrics['evaluated_on']} Spearman"
    assert any("Spearman" in line.message for line in trained.logs.all())
    _predictions_answer_with_a_score(api, tmp_path)
    _pages_lists_and_the_api_show_the_task_its_charts_and_the_gauge(trained, admin_client, api)
    _a_model_keeps_one_task(trained, create, tmp_path)


def _predictions_answer_with_a_score(api, tmp_path):
    response = api.post("/api/models/rating/predict", {"files": [upload("low.wav", 0.05), upload("long.wav", 0.9, 1.5)]})

    assert response.status_code == 200, response.content
    short, long = response.json()["results"]
    for result in (short, long):
        assert 0.0 <= result["score"] <= 1.0
        assert "label" not in result and "scores" not in result
    assert short["windows"] == 1 and "aggregation" not in short
    assert long["windows"] == 5 and long["aggregation"] == "mean"
    assert long["score"] == pytest.approx(sum(w["score"] for w in long["window_scores"]) / 5, abs=1e-5)
    logged = PredictionLog.objects.get(pk=short["prediction_id"])  # the log keeps the score and its tenth
    assert logged.score == pytest.approx(short["score"]) and logged.answer[:3] == f"{int(short['score'] * 10) / 10:.1f}"

    out = StringIO()
    call_command("predict", "rating", str(write_wav(tmp_path / "cli.wav", score_tone(0.5))), stdout=out)
    line = json.loads(out.getvalue())
    assert line["file"] == "cli.wav" and 0.0 <= line["score"] <= 1.0 and line["model"] == "rating"


def _pages_lists_and_the_api_show_the_task_its_charts_and_the_gauge(trained, admin_client, api):
    job_page = admin_client.get(f"/training/jobs/{trained.pk}/").content.decode()
    assert "Predicted vs. true score" in job_page and "Ridge baseline" in job_page
    assert 'class="scatter"' in job_page and 'class="histogram"' in job_page
    version_page = admin_client.get("/models/rating/v1/").content.decode()
    assert "Predicted vs. true score" in version_page and "Spearman" in version_page
    assert "Regression" in admin_client.get("/models/").content.decode()

    response = admin_client.post("/models/rating/try/", {"audio": upload("try.wav", 0.8)}, headers={"HX-Request": "true"})

    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="gauge"' in html and "predicted score" in html
    jobs = admin_client.get("/training/").content.decode()
    assert "regression" in jobs and "Spearman" in jobs
    job = api.get(f"/api/jobs/{trained.pk}").json()
    assert job["task"] == "regression" and job["headline"]["name"] == "Spearman"
    assert job["headline"]["value"] == trained.metrics["spearman"]
    version = api.get("/api/models/rating/versions/1").json()
    assert version["task"] == "regression" and version["prediction"] == {"aggregation": "mean",
                                                                         "window_hop_fraction": 0.5}


def _a_model_keeps_one_task(trained, create, tmp_path):
    queued = OrmQ.objects.count()

    response = create("ratings", "classification", model_name="rating")

    assert response.status_code == 409
    body = response.json()
    assert body["type"] == "urn:audioml:problem:task-mismatch" and body["field"] == "model_name"
    assert "regression model" in body["detail"]
    assert TrainingJob.objects.count() == 1 and OrmQ.objects.count() == queued

    stray = TrainingJobFactory(model_name="rating", task="classification", status="succeeded")
    with pytest.raises(TaskMismatch):
        ModelVersion.objects.register_from_job(stray, copy_artifacts(ModelVersion.objects.get(job=trained), tmp_path))
    assert RegisteredModel.objects.get(name="rating").versions.count() == 1


def test_panel_form_and_command_choose_the_task(scored, admin_client):
    response = admin_client.post("/training/new/", {"dataset": "ratings", "model_name": "from-panel", "task": "regression",
                                                    "preset": "quick", "epochs": 2, "time_shift": "on",
                                                    "spec_augment": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert TrainingJob.objects.get(model_name="from-panel").task == "regression"

    err = StringIO()
    call_command("train", "ratings", "--model", "from-cli", "--preset", "quick", "--set", "task=regression",
                 stdout=StringIO(), stderr=err)
    job = TrainingJob.objects.get(model_name="from-cli")
    assert job.task == "regression" and job.snapshot_size == 24 and job.ignored_clips == 3
    assert "task regression" in err.getvalue()

    summary = admin_client.get("/training/new/summary/", {"dataset": "ratings", "task": "regression", "preset": "quick"},
                               headers={"HX-Request": "true"}).content.decode()
    assert "scored clips" in summary and "3 active clips without" in summary

