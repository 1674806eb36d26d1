"""Jobs run in the order the panel shows them queued, whatever order the broker hands their tasks out in."""

from __future__ import annotations

import pydoc
from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from datasets_app.models import Clip
from training_app.models import TRAINING_CLUSTER, JobLog, TrainingJob


def deliver(row: OrmQ) -> str:
    """Run a queued django-q2 task the way a worker does: unpack it, look up its function, call it."""
    task = SignedPackage.loads(row.payload)
    return pydoc.locate(task["func"])(*task["args"], **task["kwargs"])


def run_order() -> list[int]:
    return list(JobLog.objects.filter(message__startswith="Started on worker").order_by("id").values_list("job_id", flat=True))


def test_jobs_run_in_queue_order_even_when_the_broker_hands_tasks_out_in_another(tones, submit):
    jobs = [submit(tones, model_name=f"model-{index}") for index in range(10)]
    positions = TrainingJob.objects.queue_positions()
    shown = sorted(positions, key=positions.get)
    assert shown == [job.pk for job in jobs]
    # Each job fails as soon as it starts (its clips are gone), so only the order is at stake here.
    for clip in Clip.objects.all():
        default_storage.delete(clip.audio.name)

    tasks = list(OrmQ.objects.filter(key=TRAINING_CLUSTER))
    assert len(tasks) == 10
    # The ORM broker's dequeue has no ORDER BY: PostgreSQL hands rows out in whatever order they lie on disk.
    for row in sorted(tasks, key=lambda row: row.pk, reverse=True):
        assert deliver(row) == "failed"

    assert run_order() == shown
    assert set(TrainingJob.objects.values_list("status", flat=True)) == {"failed"}


def test_a_task_whose_job_already_ran_runs_the_next_queued_job_or_nothing(tones, submit):
    first, second = submit(tones, model_name="first"), submit(tones, model_name="second")
    for clip in Clip.objects.all():
        default_storage.delete(clip.audio.name)
    second_task, first_task = sorted(OrmQ.objects.filter(key=TRAINING_CLUSTER), key=lambda row: row.pk, reverse=True)
    assert deliver(second_task) == "failed"  # ran `first`, the head of the queue
    assert deliver(first_task) == "failed"  # ran `second`
    assert deliver(first_task) == "skipped"  # delivered again: nothing is queued
    assert run_order() == [first.pk, second.pk]


def test_a_job_started_in_the_foreground_is_left_to_its_own_process(tones, submit, admin_user):
    foreground = TrainingJob.objects.create_job(tones, "here", "quick", {}, admin_user, enqueue=False)
    queued = submit(tones, model_name="queued")
    for clip in Clip.objects.all():
        default_storage.delete(clip.audio.name)
    (task,) = OrmQ.objects.filter(key=TRAINING_CLUSTER)
    assert deliver(task) == "failed"
    assert run_order() == [queued.pk]
    assert TrainingJob.objects.get(pk=foreground.pk).status == "queued"


def test_a_job_whose_task_trained_an_earlier_job_is_not_queued_twice(tones, submit):
    first, second = submit(tones, model_name="first"), submit(tones, model_name="second")
    for clip in Clip.objects.all():
        default_storage.delete(clip.audio.name)
    second_task = max(OrmQ.objects.filter(key=TRAINING_CLUSTER), key=lambda row: row.pk)
    assert deliver(second_task) == "failed"  # trained `first`
    second_task.delete()  # acknowledged, as the cluster does once the task returns
    later = timezone.now() + timedelta(minutes=5)
    # `second` lost its task to `first`, but first's task is still queued and will train it.
    assert TrainingJob.objects.recover_queue(later) == []
    assert OrmQ.objects.filter(key=TRAINING_CLUSTER).count() == 1
    assert not TrainingJob.objects.get(pk=second.pk).logs.filter(message__contains="missing").exists()
