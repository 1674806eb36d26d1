"""/api/jobs: create, list, get, epochs, logs, cancel and re-run, with tokens and sessions."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django_q.models import OrmQ

from tests.factories import DatasetFactory
from tests.training.conftest import TINY, add_clips
from training_app import tasks
from training_app.models import TrainingJob


def post(client: Client, url: str, body: dict | None = None):
    return client.post(url, json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def create(api, django_capture_on_commit_callbacks):
    def create(**body):
        payload = {"dataset": "tones", "model_name": "tones-model", "preset": "quick", "overrides": TINY, **body}
        with django_capture_on_commit_callbacks(execute=True):
            return post(api, "/api/jobs", payload)

    return create


def test_create_job_answers_201_with_the_queued_job(tones, create):
    response = create()
    assert response.status_code == 201, response.content
    body = response.json()
    job = TrainingJob.objects.get()
    assert body["id"] == job.pk
    assert body["url"] == f"/training/jobs/{job.pk}/"
    assert body["status"] == "queued" and body["phase"] == "waiting"
    assert body["queue_position"] == 1
    assert body["dataset"] == "tones" and body["model_name"] == "tones-model"
    assert body["snapshot_clips"] == 12 and body["snapshot_hash"] == job.snapshot_hash
    assert body["config"]["epochs"] == 2
    assert body["data"]["labels"] == [
        {"label": "high", "clips": 6, "seconds": 3.0, "speakers": 0},
        {"label": "low", "clips": 6, "seconds": 3.0, "speakers": 0},
    ]
    assert body["created_by"] == "admin-persona"
    assert OrmQ.objects.get().task_id() == job.task_id


def test_unknown_dataset_is_404(db, create):
    response = create(dataset="nope")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "No dataset named 'nope'."


def test_invalid_setting_is_422_naming_the_field(tones, create):
    response = create(overrides={"epochs": 0})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "epochs"
    assert body["detail"] == "epochs: must be at least 1 and at most 1000, got 0"
    assert TrainingJob.objects.count() == 0


def test_unknown_preset_and_extra_fields_are_422(tones, create):
    assert create(preset="turbo").status_code == 422
    assert create(colour="blue").status_code == 422


def test_untrainable_data_is_422_with_the_precise_reason(db, create):
    dataset = DatasetFactory(name="tones")
    add_clips(dataset, "yes", 6, 300.0)
    add_clips(dataset, "noise", 3, 2000.0)
    response = create()
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "urn:audioml:problem:not-trainable"
    assert "label 'noise' has 3 clips, at least 5 are needed" in body["detail"]
    assert body["problems"] == ["label 'noise' has 3 clips, at least 5 are needed"]


def test_list_jobs_filters_and_paginates(tones, submit, api):
    other = DatasetFactory(name="other")
    add_clips(other, "a", 5, 300.0)
    add_clips(other, "b", 5, 900.0)
    first, second = submit(tones), submit(tones)
    third = submit(other)
    TrainingJob.objects.filter(pk=first.pk).update(status="succeeded")
    body = api.get("/api/jobs").json()
    assert body["count"] == 3
    assert [item["id"] for item in body["items"]] == [third.pk, second.pk, first.pk]
    assert {item["id"]: item["queue_position"] for item in body["items"]} == {
        third.pk: 2, second.pk: 1, first.pk: None
    }
    assert [i["id"] for i in api.get("/api/jobs?status=queued").json()["items"]] == [third.pk, second.pk]
    assert [i["id"] for i in api.get("/api/jobs?dataset=other").json()["items"]] == [third.pk]
    page = api.get("/api/jobs?limit=1&offset=1").json()
    assert page["count"] == 3 and [i["id"] for i in page["items"]] == [second.pk]
    assert api.get("/api/jobs?status=exploded").status_code == 422


def test_get_job_reports_progress_and_final_metrics(tones, submit, api):
    job = submit(tones)
    queued = api.get(f"/api/jobs/{job.pk}").json()
    assert (queued["status"], queued["queue_position"], queued["metrics"]) == ("queued", 1, {})
    assert queued["version"] is None
    assert tasks.run_training_job(job.pk) == "succeeded"
    body = api.get(f"/api/jobs/{job.pk}").json()
    assert body["status"] == "succeeded" and body["progress"] == 100.0 and body["queue_position"] is None
    assert body["version"] == 1 and "artifacts_dir" not in body  # no path that exists only on the worker
    assert body["accuracy"] == body["metrics"]["accuracy"]
    assert body["baseline_accuracy"] == body["metrics"]["baseline"]["accuracy"]
    assert [epoch["epoch"] for epoch in body["epochs"]] == [1, 2]
    epochs = api.get(f"/api/jobs/{job.pk}/epochs").json()
    assert epochs == body["epochs"]
    logs = api.get(f"/api/jobs/{job.pk}/logs").json()
    assert logs["count"] >= 4
    assert logs["items"][0]["message"].startswith("Queued by")
    last_id = logs["items"][-2]["id"]
    tail = api.get(f"/api/jobs/{job.pk}/logs?after={last_id}").json()
    assert [item["message"][:12] for item in tail["items"]] == ["Succeeded in"]


def test_unknown_job_is_404(db, api):
    for url in ("/api/jobs/999", "/api/jobs/999/epochs", "/api/jobs/999/logs"):
        response = api.get(url)
        assert response.status_code == 404
        assert response.json()["detail"] == "No training job #999."
    assert post(api, "/api/jobs/999/cancel").status_code == 404


def test_cancel_job_and_409_once_finished(tones, submit, api):
    job = submit(tones)
    response = post(api, f"/api/jobs/{job.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert OrmQ.objects.count() == 0
    again = post(api, f"/api/jobs/{job.pk}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == f"Job #{job.pk} has already cancelled; only queued or running jobs can be cancelled."


def test_rerun_job_creates_a_new_job(tones, submit, api, django_capture_on_commit_callbacks):
    job = submit(tones, seed=4)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, f"/api/jobs/{job.pk}/rerun")
    assert response.status_code == 201
    body = response.json()
    assert body["rerun_of"] == job.pk
    assert body["overrides"] == {**TINY, "seed": 4}
    assert TrainingJob.objects.get(pk=body["id"]).task_id


def test_anonymous_and_non_staff_are_refused(tones, submit, client, outsider_client):
    job = submit(tones)
    assert client.get("/api/jobs").status_code == 401
    assert client.get(f"/api/jobs/{job.pk}").status_code == 401
    assert outsider_client.get("/api/jobs").status_code == 403
    assert post(outsider_client, f"/api/jobs/{job.pk}/cancel").status_code == 403
    assert TrainingJob.objects.get(pk=job.pk).status == "queued"


def test_staff_session_needs_csrf_to_write(tones, submit, staff_user):
    job = submit(tones)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff_user)
    assert browser.get(f"/api/jobs/{job.pk}").status_code == 200
    assert post(browser, f"/api/jobs/{job.pk}/cancel").status_code == 403
    assert TrainingJob.objects.get(pk=job.pk).status == "queued"
