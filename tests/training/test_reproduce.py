"""Reproduce a version: train its frozen snapshot again with its configuration, and say whether the metrics match.
Real tiny trainings on the CPU, through the API, the panel and the commands, with role checks."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from datasets_app.models import Clip
from registry_app.models import ModelVersion
from tests.training.conftest import add_clips
from training_app import tasks
from training_app.models import TrainingJob
from training_app.reproduce import compare_metrics


def post(client: Client, url: str, body: dict | None = None):
    return client.post(url, json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def version_one(tones, submit):
    """v1 of tones-model, trained for real with seed 7; then the dataset changes, so that a fresh snapshot differs."""
    job = submit(tones, seed=7)
    assert tasks.run_training_job(job.pk) == "succeeded"
    Clip.objects.filter(dataset=tones, label="low").order_by("id").first().trash()
    add_clips(tones, "high", 2, 2900.0)
    return ModelVersion.objects.get(job=job)


@pytest.fixture
def cheap_version(tones, submit):
    """v1 of tones-model without training: its job's real frozen snapshot and configuration, a succeeded status
    and metrics written as a worker would (for the tests that need no real model)."""
    from registry_app.models import RegisteredModel

    job = submit(tones, seed=7)
    metrics = {"evaluated_on": "test", "device": "cpu", "test": {"accuracy": 0.75, "macro_f1": 0.7, "n": 4},
               "val": {"accuracy": 0.5, "n": 2}, "history": [{"epoch": 1, "val_loss": 0.61, "seconds": 0.2}]}
    TrainingJob.objects.filter(pk=job.pk).update(status="succeeded", metrics=metrics)
    job.refresh_from_db()
    model = RegisteredModel.objects.create(name="tones-model")
    Clip.objects.filter(dataset=tones, label="low").order_by("id").first().trash()
    add_clips(tones, "high", 2, 2900.0)
    return ModelVersion.objects.create(model=model, version=1, job=job, snapshot_hash=job.snapshot_hash,
                                       snapshot_size=job.snapshot_size, labels=["high", "low"], metrics=metrics,
                                       train_config=job.config,
                                       feature_config={"sample_rate": 16000, "clip_samples": 8000})


def test_reproducing_a_version_trains_its_frozen_snapshot_again_and_the_metrics_match(
    version_one, trainer_client, django_capture_on_commit_callbacks
):
    source = version_one.job
    with django_capture_on_commit_callbacks(execute=True):
        response = post(trainer_client, "/api/models/tones-model/versions/v1/reproduce")
    assert response.status_code == 201, response.content
    body = response.json()
    again = TrainingJob.objects.get(pk=body["id"])
    # Exactly the frozen snapshot and configuration, not the dataset as it is now.
    assert body["reproduces"] == source.pk and again.reproduces_id == source.pk
    assert body["snapshot_hash"] == source.snapshot_hash and again.snapshot == source.snapshot
    assert again.config == source.config and again.config["seed"] == 7
    assert body["status"] == "queued" and again.task_id  # on the training queue, for any worker
    # The snapshot names clips by their storage names, never by a path on the machine that queued the job.
    assert all(not entry["audio"].startswith("/") for entry in again.snapshot)
    assert body["reproduction"] is None  # nothing to compare yet

    assert tasks.run_training_job(again.pk) == "succeeded"
    again.refresh_from_db()
    v2 = ModelVersion.objects.get(job=again)
    assert v2.version == 2
    check = compare_metrics(version_one.metrics, v2.metrics)
    assert check.match and check.compared > 30
    assert v2.metrics["test"] == version_one.metrics["test"]
    assert [epoch["val_loss"] for epoch in v2.metrics["history"]] == [
        epoch["val_loss"] for epoch in version_one.metrics["history"]]

    detail = trainer_client.get(f"/api/jobs/{again.pk}").json()
    assert detail["reproduction"]["match"] is True
    assert detail["reproduction"]["of_job"] == source.pk
    assert detail["reproduction"]["differences"] == []
    assert detail["reproduction"]["summary"].startswith("The metrics match: all ")

    # The pages say so: the new job's, the new version's, and the source version's list of reproductions.
    job_page = trainer_client.get(f"/training/jobs/{again.pk}/").content.decode()
    assert "Reproduced: the metrics match." in job_page and f"reproduces <a href=\"/training/jobs/{source.pk}/\"" in job_page
    v2_page = trainer_client.get("/models/tones-model/v2/").content.decode()
    assert "Reproduced: the metrics match." in v2_page and "equal those of v1" in v2_page
    v1_page = trainer_client.get("/models/tones-model/v1/").content.decode()
    assert "Trained again from this snapshot" in v1_page and ">match</span>" in v1_page


def test_run_again_still_takes_a_fresh_snapshot(cheap_version, trainer_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(trainer_client, f"/api/jobs/{cheap_version.job_id}/rerun")
    assert response.status_code == 201
    assert response.json()["snapshot_hash"] != cheap_version.snapshot_hash
    assert response.json()["reproduces"] is None


def test_a_reproduction_whose_metrics_differ_says_which_figures_changed(cheap_version, trainer_client):
    again = cheap_version.reproduce(by=None, enqueue=False)
    metrics = json.loads(json.dumps(cheap_version.job.metrics))
    metrics["test"]["accuracy"] = metrics["test"]["accuracy"] - 0.25
    metrics["timings"] = {"training_seconds": 999.0}  # timings never count
    metrics["device"] = "cuda"
    TrainingJob.objects.filter(pk=again.pk).update(status="succeeded", metrics=metrics)

    detail = trainer_client.get(f"/api/jobs/{again.pk}").json()["reproduction"]
    assert detail["match"] is False
    assert [d["path"] for d in detail["differences"]] == ["test.accuracy"]
    assert detail["devices"] == ["cpu", "cuda"]
    page = trainer_client.get(f"/training/jobs/{again.pk}/").content.decode()
    assert "Not reproduced: the metrics differ." in page
    assert "<code>test.accuracy</code>" in page and "the original ran on cpu, this one on cuda" in page


def test_the_panel_button_queues_a_reproduction_and_refuses_a_snapshot_whose_clips_are_gone(
    cheap_version, trainer_client, django_capture_on_commit_callbacks
):
    page = trainer_client.get("/models/tones-model/v1/").content.decode()
    assert f'action="/training/jobs/{cheap_version.job_id}/reproduce/"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = trainer_client.post(f"/training/jobs/{cheap_version.job_id}/reproduce/",
                                       {"back": "/models/tones-model/v1/"})
    again = TrainingJob.objects.get(reproduces=cheap_version.job)
    assert response.status_code == 302 and response["Location"] == f"/training/jobs/{again.pk}/"
    assert again.snapshot_hash == cheap_version.snapshot_hash

    # A clip of the snapshot deleted for good (trash, then empty the trash): the snapshot cannot be trained again.
    gone = Clip.objects.get(pk=cheap_version.job.snapshot[0]["id"])
    gone.trash()
    gone.purge()
    response = trainer_client.post(f"/training/jobs/{cheap_version.job_id}/reproduce/", {"back": "/models/tones-model/v1/"},
                                   follow=True)
    assert response.redirect_chain[-1][0] == "/models/tones-model/v1/"
    assert "were deleted for good since (clip" in response.content.decode()
    api = post(trainer_client, "/api/models/tones-model/versions/1/reproduce")
    assert api.status_code == 422
    assert "1 of the 12 clips" in api.json()["problems"][0]
    assert TrainingJob.objects.filter(reproduces=cheap_version.job).count() == 1


@pytest.mark.parametrize("persona", ["viewer_client", "approver_client", "roleless_client"])
def test_only_trainers_may_reproduce(cheap_version, persona, request):
    client = request.getfixturevalue(persona)
    assert post(client, "/api/models/tones-model/versions/1/reproduce").status_code == 403
    assert post(client, f"/api/jobs/{cheap_version.job_id}/reproduce").status_code == 403
    assert client.post(f"/training/jobs/{cheap_version.job_id}/reproduce/").status_code == 403
    if persona == "viewer_client":
        assert "Train again from this snapshot" not in client.get("/models/tones-model/v1/").content.decode()
    assert not TrainingJob.objects.filter(reproduces=cheap_version.job).exists()


def test_reproduce_command_trains_here_and_prints_whether_the_metrics_match(version_one):
    out, err = StringIO(), StringIO()
    call_command("reproduce", "tones-model:1", "--now", stdout=out, stderr=err)
    lines = out.getvalue().splitlines()
    outcome = json.loads("\n".join(lines[1:]))
    assert outcome["reproduction"]["match"] is True and outcome["reproduction"]["of_job"] == version_one.job_id
    assert "The metrics match" in err.getvalue()
    assert ModelVersion.objects.filter(model__name="tones-model").count() == 2
    with pytest.raises(CommandError, match="No registered model named 'nope'"):
        call_command("reproduce", "nope:1", stdout=StringIO(), stderr=StringIO())


def test_train_reproduce_queues_a_job_for_the_workers(cheap_version):
    out = StringIO()
    call_command("train", "--reproduce", str(cheap_version.job_id), stdout=out, stderr=StringIO())
    again = TrainingJob.objects.get(pk=int(out.getvalue().strip()))
    assert again.reproduces_id == cheap_version.job_id and again.status == "queued"
    with pytest.raises(CommandError, match="give none"):
        call_command("train", "tones", "--reproduce", str(cheap_version.job_id), stdout=StringIO(), stderr=StringIO())
