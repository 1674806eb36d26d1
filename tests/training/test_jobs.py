"""Creating, queueing, cancelling, re-running and reaping jobs (no training here)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from audioml.errors import Conflict, Unprocessable
from datasets_app.models import Clip
from tests.factories import DatasetFactory
from tests.training.conftest import TINY, add_clips
from training_app.apps import REAPER_SCHEDULE_NAME, ensure_reaper_schedule
from training_app.models import JobLog, TrainingJob, snapshot_hash


def test_create_job_freezes_snapshot_and_enqueues_on_the_training_cluster(tones, submit, admin_user, broker):
    job = submit(tones)
    assert job.status == "queued"
    assert job.phase == "waiting"
    assert job.created_by == admin_user
    assert len(job.snapshot) == 12
    entry = job.snapshot[0]
    clip = Clip.objects.get(pk=entry["id"])
    assert entry == {
        "id": clip.pk, "content_hash": clip.content_hash, "label": clip.label, "speaker": "",
        "audio": clip.audio.name, "duration": 0.5,
    }
    assert [e["id"] for e in job.snapshot] == sorted(e["id"] for e in job.snapshot)
    assert len(job.snapshot_hash) == 64
    assert job.config["epochs"] == 2 and job.config["preset"] == "quick"
    assert job.overrides == TINY
    job.refresh_from_db()
    assert job.task_id
    (payload,) = broker.pending()
    task = broker.unpack(payload)
    assert task["id"] == job.task_id
    assert task["func"] == "training_app.tasks.run_training_job"
    assert task["args"] == (job.pk,)
    assert task["name"] == f"training-job-{job.pk}"
    assert job.logs.filter(message__contains="Queued by admin-persona").exists()


def test_job_is_enqueued_only_after_the_transaction_commits(tones, django_capture_on_commit_callbacks, admin_user,
                                                            broker):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = TrainingJob.objects.create_job(tones, "m", "quick", TINY, admin_user)
    assert broker.pending() == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert broker.task_ids() == [TrainingJob.objects.get(pk=job.pk).task_id]


@pytest.mark.parametrize(
    ("preset", "overrides", "field", "message"),
    [
        ("quick", {"epochs": 0}, "epochs", "epochs: must be at least 1 and at most 1000, got 0"),
        ("quick", {"epochs": 1001}, "epochs", "at most 1000"),
        ("quick", {"batch_size": 513}, "batch_size", "batch_size: must be at least 1 and at most 512"),
        ("quick", {"learning_rate": 0}, "learning_rate", "greater than 0"),
        ("quick", {"val_fraction": 0.9}, "val_fraction", "val_fraction"),
        ("quick", {"seed": "seven"}, "seed", "must be a whole number"),
        ("quick", {"noise": "yes"}, "noise", "must be true or false"),
        ("quick", {"wings": 2}, "wings", "unknown setting 'wings'"),
        ("fastest", {}, "preset", "unknown preset 'fastest'"),
    ],
)
def test_invalid_configuration_is_unprocessable_naming_the_field(tones, admin_user, preset, overrides, field, message):
    with pytest.raises(Unprocessable) as caught:
        TrainingJob.objects.create_job(tones, "m", preset, overrides, admin_user)
    assert caught.value.status == 422
    assert caught.value.extra["field"] == field
    assert message in caught.value.detail
    assert TrainingJob.objects.count() == 0


def test_unsupported_task_is_unprocessable(tones, admin_user):
    with pytest.raises(Unprocessable) as caught:
        TrainingJob.objects.create_job(tones, "m", "quick", TINY, admin_user, task="captioning")
    assert caught.value.extra["field"] == "task"
    assert "unknown task 'captioning'" in caught.value.detail


def test_invalid_model_name_is_unprocessable(tones, admin_user):
    with pytest.raises(Unprocessable) as caught:
        TrainingJob.objects.create_job(tones, "My Model", "quick", TINY, admin_user)
    assert caught.value.extra["field"] == "model_name"


def test_too_few_clips_of_a_label_is_reported_precisely(db, admin_user):
    dataset = DatasetFactory()
    add_clips(dataset, "yes", 6, 300.0)
    add_clips(dataset, "noise", 3, 2000.0)
    with pytest.raises(Unprocessable) as caught:
        TrainingJob.objects.create_job(dataset, "m", "quick", TINY, admin_user)
    assert caught.value.code == "not-trainable"
    assert "label 'noise' has 3 clips, at least 5 are needed" in caught.value.detail
    assert caught.value.extra["problems"] == ["label 'noise' has 3 clips, at least 5 are needed"]
    assert TrainingJob.objects.count() == 0
    assert OrmQ.objects.count() == 0


def test_a_single_label_cannot_train(db, admin_user):
    dataset = DatasetFactory()
    add_clips(dataset, "yes", 6, 300.0)
    with pytest.raises(Unprocessable) as caught:
        TrainingJob.objects.create_job(dataset, "m", "quick", TINY, admin_user)
    assert "only one label ('yes')" in caught.value.detail


def test_empty_and_unlabelled_datasets_say_why(db, admin_user):
    empty = DatasetFactory()
    with pytest.raises(Unprocessable) as caught:
        TrainingJob.objects.create_job(empty, "m", "quick", TINY, admin_user)
    assert "the dataset has no clips" in caught.value.detail
    unlabelled = DatasetFactory()
    add_clips(unlabelled, "", 4, 300.0)
    with pytest.raises(Unprocessable) as caught:
        TrainingJob.objects.create_job(unlabelled, "m", "quick", TINY, admin_user)
    assert "no labelled clips (4 active clips have no label)" in caught.value.detail


def test_trashed_and_unlabelled_clips_stay_out_of_the_snapshot(tones, submit):
    trashed = tones.clips.filter(label="low").first()
    trashed.status = Clip.Status.TRASHED
    trashed.save()
    add_clips(tones, "", 2, 4000.0)
    job = submit(tones)
    ids = {entry["id"] for entry in job.snapshot}
    assert len(ids) == 11
    assert trashed.pk not in ids


def test_editing_a_clip_after_submit_does_not_change_the_job_snapshot(tones, submit):
    job = submit(tones)
    frozen, frozen_hash = [dict(e) for e in job.snapshot], job.snapshot_hash
    clip = Clip.objects.get(pk=job.snapshot[0]["id"])
    clip.label = "high" if clip.label == "low" else "low"
    clip.save()
    job.refresh_from_db()
    assert job.snapshot == frozen
    assert job.snapshot_hash == frozen_hash
    later = submit(tones)
    assert later.snapshot_hash != frozen_hash
    assert next(e for e in later.snapshot if e["id"] == clip.pk)["label"] == clip.label


def test_same_data_gives_the_same_snapshot_hash(tones, submit):
    first, second = submit(tones), submit(tones, seed=5)
    assert first.snapshot_hash == second.snapshot_hash == snapshot_hash(first.snapshot)


def test_queue_positions_follow_submission_order(tones, submit):
    jobs = [submit(tones) for _ in range(3)]
    assert [job.queue_position() for job in jobs] == [1, 2, 3]
    TrainingJob.objects.filter(pk=jobs[0].pk).update(status="running")
    jobs[0].refresh_from_db()
    assert jobs[0].queue_position() is None
    assert TrainingJob.objects.queue_positions() == {jobs[1].pk: 1, jobs[2].pk: 2}
    assert jobs[2].queue_position() == 2


def test_cancelling_a_queued_job_removes_its_task_from_the_queue(tones, submit, staff_user, broker):
    job, other = submit(tones), submit(tones)
    assert len(broker.task_ids()) == 2
    job.cancel(staff_user)
    assert job.status == "cancelled"
    assert job.finished_at is not None
    assert broker.task_ids() == [TrainingJob.objects.get(pk=other.pk).task_id]
    assert job.logs.filter(level="warning", message__contains="Cancelled by staff-persona while queued").exists()


def test_cancelling_a_running_job_asks_the_worker_to_stop(tones, submit, staff_user):
    job = submit(tones)
    TrainingJob.objects.filter(pk=job.pk).update(status="running", started_at=timezone.now())
    job.refresh_from_db()
    job.cancel(staff_user)
    assert job.status == "running"
    assert job.cancel_requested is True
    assert not job.can_cancel


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_cancelling_a_finished_job_is_a_conflict(tones, submit, status):
    job = submit(tones)
    TrainingJob.objects.filter(pk=job.pk).update(status=status)
    with pytest.raises(Conflict) as caught:
        job.cancel()
    assert caught.value.status == 409
    assert f"has already {status}" in caught.value.detail
    job.refresh_from_db()
    assert job.status == status


def test_run_again_takes_a_fresh_snapshot_with_the_same_settings(tones, submit, staff_user):
    job = submit(tones, seed=3)
    add_clips(tones, "high", 1, 5000.0)
    again = job.rerun(staff_user)
    assert again.pk != job.pk
    assert again.rerun_of == job
    assert (again.dataset, again.model_name, again.preset, again.overrides) == (
        job.dataset, job.model_name, job.preset, job.overrides
    )
    assert again.created_by == staff_user
    assert len(again.snapshot) == 13 and len(job.snapshot) == 12
    assert again.snapshot_hash != job.snapshot_hash


def test_reaper_fails_running_jobs_whose_worker_went_silent(tones, submit, broker):
    now = timezone.now()
    stale, fresh = submit(tones), submit(tones)
    silent_since = now - timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 5)
    TrainingJob.objects.filter(pk=stale.pk).update(
        status="running", started_at=silent_since, heartbeat_at=silent_since, worker="box:123"
    )
    TrainingJob.objects.filter(pk=fresh.pk).update(status="running", started_at=silent_since, heartbeat_at=now)
    (stale.working_dir()).mkdir(parents=True)
    assert TrainingJob.objects.reap_stale(now) == [stale.pk]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == "failed"
    assert stale.error.startswith("worker lost: worker box:123 sent no heartbeat")
    assert stale.finished_at == now
    assert not stale.working_dir().exists()
    assert stale.logs.filter(level="error", message__startswith="worker lost").exists()
    assert fresh.status == "running"
    assert TrainingJob.objects.reap_stale(now) == []


def test_after_a_lost_worker_the_next_queued_task_is_handed_back(tones, submit, broker):
    """A dead cluster had already pulled the next task (ORM: locked for hours; Redis: popped, gone with the
    cluster); reaping hands it back to the queue."""
    now = timezone.now()
    running, waiting = submit(tones), submit(tones)
    long_ago = now - timedelta(hours=1)
    TrainingJob.objects.filter(pk=running.pk).update(status="running", started_at=long_ago, heartbeat_at=long_ago,
                                                     created_at=long_ago)
    TrainingJob.objects.filter(pk=waiting.pk).update(created_at=long_ago)
    broker.pull(), broker.pull()  # the task that started `running`, and the next one, prefetched
    assert TrainingJob.objects.reap_stale(now) == [running.pk]
    waiting.refresh_from_db()
    assert broker.task_ids() == [waiting.task_id]
    if broker.name == "orm":
        assert OrmQ.objects.get(key="training").lock <= now
        assert waiting.logs.filter(message__contains="Released from a lost worker").exists()
    else:
        assert waiting.logs.filter(message__contains="missing from the queue (a lost worker had taken it)").exists()


def test_queue_is_left_alone_while_a_worker_is_busy(tones, submit, broker):
    now = timezone.now()
    long_ago = now - timedelta(hours=1)
    running, waiting = submit(tones), submit(tones)
    TrainingJob.objects.filter(pk=running.pk).update(status="running", started_at=now, heartbeat_at=now)
    TrainingJob.objects.filter(pk=waiting.pk).update(created_at=long_ago)
    broker.acknowledge(broker.pull())
    prefetched = broker.pull()  # held by the busy cluster, which will run it next
    assert TrainingJob.objects.recover_queue(now) == []
    assert broker.task_ids() == ([broker.unpack(prefetched)["id"]] if broker.name == "orm" else [])
    if broker.name == "orm":
        assert OrmQ.objects.get(key="training").lock > now


def test_a_queued_job_whose_task_vanished_is_queued_again(tones, submit, broker):
    job = submit(tones)
    broker.acknowledge(broker.pending()[0])
    assert broker.pending() == []
    later = timezone.now() + timedelta(minutes=5)
    assert TrainingJob.objects.recover_queue(later) == [job.pk]
    job.refresh_from_db()
    assert broker.task_ids() == [job.task_id]


def test_the_scheduled_reaper_fails_lost_jobs_and_recovers_the_queue(tones, submit, broker):
    from training_app.tasks import reap_stale_jobs

    long_ago = timezone.now() - timedelta(hours=1)
    lost, waiting = submit(tones), submit(tones)
    TrainingJob.objects.filter(pk=lost.pk).update(status="running", started_at=long_ago, heartbeat_at=long_ago)
    TrainingJob.objects.filter(pk=waiting.pk).update(created_at=long_ago)
    broker.acknowledge(broker.pending()[1])  # the lost worker had pulled waiting's task
    outcome = reap_stale_jobs()
    assert outcome["reaped"] == [lost.pk]
    assert TrainingJob.objects.get(pk=lost.pk).status == "failed"
    assert broker.task_ids() == [TrainingJob.objects.get(pk=waiting.pk).task_id]


def test_reaper_schedule_is_created_once_for_the_default_cluster(db):
    ensure_reaper_schedule()
    ensure_reaper_schedule()
    schedule = Schedule.objects.get(name=REAPER_SCHEDULE_NAME)
    assert schedule.func == "training_app.tasks.reap_stale_jobs"
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1
    assert schedule.cluster is None
    assert Schedule.objects.filter(func="training_app.tasks.reap_stale_jobs").count() == 1


def test_job_logs_are_kept_in_order(tones, submit):
    job = submit(tones)
    job.log(JobLog.Level.WARNING, "second")
    assert list(job.logs.values_list("level", flat=True)) == ["info", "warning"]
