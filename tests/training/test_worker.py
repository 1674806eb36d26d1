"""The worker code path end to end: tasks.run_training_job trains real (tiny) models."""

from __future__ import annotations

import errno
import json

from django.core.files.storage import FileSystemStorage, default_storage

from datasets_app.models import Clip
from registry_app.models import ModelVersion, RegisteredModel
from training_app import tasks
from training_app.models import TrainingJob


def test_worker_trains_a_queued_job_to_success(tones, submit):
    job = submit(tones)
    assert tasks.run_training_job(job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.phase == "done"
    assert job.progress == 100.0
    assert job.eta_seconds is None
    assert job.started_at and job.finished_at and job.started_at <= job.finished_at
    assert job.heartbeat_at is not None
    assert job.worker == tasks.worker_name()
    assert [epoch["epoch"] for epoch in job.epochs] == [1, 2]
    assert set(job.epochs[0]) >= {"train_loss", "val_loss", "val_accuracy", "lr", "seconds"}
    assert job.metrics["labels"] == ["high", "low"]
    assert 0.0 <= job.metrics["accuracy"] <= 1.0
    assert job.metrics["baseline"]["accuracy"] is not None
    assert job.metrics["test"]["confusion_matrix"]["labels"] == ["high", "low"]
    assert job.error == "" and job.traceback == ""
    # The job's success and its registry version were committed together by the hand-off.
    version = ModelVersion.objects.get()
    assert version.job_id == job.pk and version.model.name == job.model_name and version.version == 1
    assert version.labels == ["high", "low"]
    assert sorted(entry["name"] for entry in version.artifacts) == sorted(
        ["weights.pt", "model.pt2", "model.onnx", "config.json", "metrics.json", "snapshot.json"]
    )
    with default_storage.open(version.artifact("snapshot.json")["path"]) as stored:
        snapshot = json.loads(stored.read())
    assert snapshot["snapshot_hash"] == job.snapshot_hash
    assert [clip["id"] for clip in snapshot["clips"]] == [e["id"] for e in job.snapshot]
    # Once registered, the working folder is no longer needed: the work folder does not grow with every job.
    assert not job.working_dir().exists()
    messages = list(job.logs.values_list("message", flat=True))
    assert any(m.startswith("Started on worker") for m in messages)
    assert any(m.startswith("split: ") for m in messages)
    assert messages[-1].startswith("Succeeded in")


def test_running_the_task_twice_trains_once(tones, submit, broker):
    job = submit(tones)
    (task,) = broker.pending()
    assert broker.deliver(task) == "succeeded"
    finished_at = TrainingJob.objects.get(pk=job.pk).finished_at
    assert broker.deliver(task) == "skipped"  # delivered again (a broker's retry): the job is not queued
    job.refresh_from_db()
    assert job.finished_at == finished_at
    assert ModelVersion.objects.count() == 1


def test_task_refuses_a_job_another_worker_claimed(tones, submit, broker):
    job = submit(tones)
    TrainingJob.objects.filter(pk=job.pk).update(status="running", worker="elsewhere:1")
    assert broker.deliver(broker.pull()) == "skipped"
    job.refresh_from_db()
    assert (job.status, job.worker, job.epochs) == ("running", "elsewhere:1", [])


def test_task_for_a_deleted_job_does_nothing(db):
    assert tasks.run_training_job(987654) == "skipped"


def test_cancelling_a_running_job_stops_it_without_artifacts(tones, submit, monkeypatch, staff_user, broker):
    monkeypatch.setattr(tasks, "CANCEL_POLL_SECONDS", 0.0)
    job = submit(tones, epochs=40)
    seen = []

    def cancel_after_first_epoch(running_job, progress):
        seen.append(progress.phase)
        if progress.epoch is not None and progress.epoch["epoch"] == 1:
            TrainingJob.objects.get(pk=running_job.pk).cancel(staff_user)

    assert broker.unpack(broker.pull())["args"] == (job.pk,)
    assert tasks.run_training_job(job.pk, progress_hook=cancel_after_first_epoch) == "cancelled"
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert job.cancel_requested
    assert job.error == "Cancelled while training; no model was saved."
    assert len(job.epochs) < 40
    assert not job.working_dir().exists()
    assert not list(job.working_dir().parent.glob(f"{job.pk}*"))
    assert not ModelVersion.objects.exists()
    assert job.logs.filter(level="warning", message__startswith="Cancel requested by staff-persona").exists()
    assert job.logs.filter(level="warning", message__startswith="Cancelled while training").exists()


def test_a_corrupt_clip_fails_the_job_with_its_traceback(tones, submit):
    job = submit(tones)
    broken = job.snapshot[3]
    with default_storage.open(broken["audio"], "wb") as handle:
        handle.write(b"this is not audio")
    assert tasks.run_training_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == "failed"
    assert f"clip {broken['id']}: cannot read" in job.error
    assert "Traceback (most recent call last)" in job.traceback
    assert "load_features" in job.traceback
    assert job.finished_at is not None
    assert not job.working_dir().exists()
    assert not ModelVersion.objects.exists()
    assert job.logs.filter(level="error", message__startswith="Failed: ").exists()


def test_clips_deleted_since_submit_fail_the_job_clearly(tones, submit):
    job = submit(tones)
    gone = Clip.objects.get(pk=job.snapshot[0]["id"])
    default_storage.delete(gone.audio.name)
    assert tasks.run_training_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.error.startswith("1 of the 12 clips in this job's snapshot no longer have their audio file")
    assert f"clip {gone.pk} ({gone.audio.name})" in job.error
    assert "Run the job again" in job.error


def test_the_worker_trains_the_snapshot_not_the_live_dataset(tones, submit):
    job = submit(tones)
    Clip.objects.filter(dataset=tones, label="low").update(label="renamed")
    Clip.objects.filter(dataset=tones, label="high")[:1].get().delete()
    assert tasks.run_training_job(job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.metrics["labels"] == ["high", "low"]
    assert sum(job.metrics["split"][name] for name in ("train", "val", "test")) == 12


class FullRegistryStorage(FileSystemStorage):
    """The media storage refusing every model file, the way a full disk does."""

    def _save(self, name, content):
        if name.startswith("models/"):
            raise OSError(errno.ENOSPC, "registry is full")
        return super()._save(name, content)


def test_a_failing_registration_fails_the_job_and_removes_the_artifacts(tones, submit, settings):
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.FullRegistryStorage"}}
    job = submit(tones)
    assert tasks.run_training_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == "failed"  # the success written in the same transaction was rolled back
    assert job.error == f"OSError: [Errno {errno.ENOSPC}] registry is full"
    assert "_save" in job.traceback
    assert not job.working_dir().exists()
    assert not ModelVersion.objects.exists() and not RegisteredModel.objects.exists()
    assert not job.logs.filter(message__startswith="Succeeded").exists()


def test_same_snapshot_and_seed_give_the_same_model(tones, submit, django_capture_on_commit_callbacks):
    first = submit(tones, seed=11)
    with django_capture_on_commit_callbacks(execute=True):
        second = first.rerun(None)
    assert tasks.run_training_job(first.pk) == "succeeded"
    # The second job reads features from the cache the first one filled: the result must not change.
    assert tasks.run_training_job(second.pk) == "succeeded"
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.snapshot_hash == second.snapshot_hash

    def without_timings(epochs):
        return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in epochs]

    assert without_timings(first.epochs) == without_timings(second.epochs)
    for key in ("accuracy", "macro_f1", "test", "val", "baseline"):
        assert first.metrics[key] == second.metrics[key]
    assert first.metrics["feature_cache"] == {"hits": 0, "misses": 12}
    assert second.metrics["feature_cache"] == {"hits": 12, "misses": 0}


def test_worker_uses_its_share_of_the_cores(settings, monkeypatch):
    monkeypatch.setattr(tasks.os, "cpu_count", lambda: 8)
    settings.Q_WORKERS = 3
    assert tasks.training_threads() == 2
    settings.Q_WORKERS = 16
    assert tasks.training_threads() == 1


def test_the_job_records_the_device_it_trained_on_and_shows_it(tones, submit, settings, staff_client, api):
    from training_app.ml.device import cpu_name

    settings.TRAINING_DEVICE = "cpu"  # forced: on a GPU machine auto would take the GPU (tests/gpu/ checks that)
    job = submit(tones)
    assert tasks.run_training_job(job.pk) == "succeeded"
    job.refresh_from_db()
    assert (job.device, job.device_name) == ("cpu", cpu_name())
    assert job.metrics["device"] == "cpu" and job.metrics["training_precision"] == "fp32"
    assert job.logs.filter(message=f"Training on the CPU ({cpu_name()}).").exists()
    page = staff_client.get(f"/training/jobs/{job.pk}/").content.decode()
    assert f"Trained on {cpu_name()} (CPU) · full precision (fp32)" in page
    body = api.get(f"/api/jobs/{job.pk}").json()
    assert (body["device"], body["device_name"], body["training_precision"]) == ("cpu", cpu_name(), "fp32")


def test_a_gpu_the_machine_lacks_fails_the_job_saying_so(tones, submit, settings):
    import torch

    if torch.cuda.is_available():
        settings.TRAINING_DEVICE = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU
    else:
        settings.TRAINING_DEVICE = "cuda"
    job = submit(tones)
    assert tasks.run_training_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.error.startswith(f"DeviceUnavailable: TRAINING_DEVICE={settings.TRAINING_DEVICE}, but this machine has")
    assert not ModelVersion.objects.exists()
