"""Jobs run in the order the panel shows them queued, whatever order the broker hands their tasks out in.

Each test runs on both brokers (the ORM and Redis: the `broker` fixture)."""

from __future__ import annotations

from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone

from datasets_app.models import Clip
from training_app.models import JobLog, TrainingJob


def run_order() -> list[int]:
    return list(JobLog.objects.filter(message__startswith="Started on worker").order_by("id").values_list("job_id", flat=True))


def test_jobs_run_in_queue_order_even_when_the_broker_hands_tasks_out_in_another(tones, submit, broker):
    jobs = [submit(tones, model_name=f"model-{index}") for index in range(10)]
    positions = TrainingJob.objects.queue_positions()
    shown = sorted(positions, key=positions.get)
    assert shown == [job.pk for job in jobs]
    # Each job fails as soon as it starts (its clips are gone), so only the order is at stake here.
    for clip in Clip.objects.all():
        default_storage.delete(clip.audio.name)

    tasks = broker.pending()
    assert len(tasks) == 10
    # The ORM broker's dequeue has no ORDER BY: PostgreSQL hands rows out in whatever order they lie on disk.
    for payload in reversed(tasks):
        assert broker.deliver(payload) == "failed"

    assert run_order() == shown
    assert set(TrainingJob.objects.values_list("status", flat=True)) == {"failed"}


def test_a_task_whose_job_already_ran_runs_the_next_queued_job_or_nothing(tones, submit, broker):
    first, second = submit(tones, model_name="first"), submit(tones, model_name="second")
    for clip in Clip.objects.all():
        default_storage.delete(clip.audio.name)
    first_task, second_task = broker.pending()
    assert broker.deliver(second_task) == "failed"  # ran `first`, the head of the queue
    assert broker.deliver(first_task) == "failed"  # ran `second`
    assert broker.deliver(first_task) == "skipped"  # delivered again: nothing is queued
    assert run_order() == [first.pk, second.pk]


def test_a_job_started_in_the_foreground_is_left_to_its_own_process(tones, submit, admin_user, broker):
    foreground = TrainingJob.objects.create_job(tones, "here", "quick", {}, admin_user, enqueue=False)
    queued = submit(tones, model_name="queued")
    for clip in Clip.objects.all():
        default_storage.delete(clip.audio.name)
    (task,) = broker.pending()
    assert broker.deliver(task) == "failed"
    assert run_order() == [queued.pk]
    assert TrainingJob.objects.get(pk=foreground.pk).status == "queued"


def test_a_job_whose_task_trained_an_earlier_job_is_not_queued_twice(tones, submit, broker):
    first, second = submit(tones, model_name="first"), submit(tones, model_name="second")
    for clip in Clip.objects.all():
        default_storage.delete(clip.audio.name)
    second_task = broker.pending()[-1]
    assert broker.deliver(second_task) == "failed"  # trained `first`
    broker.acknowledge(second_task)
    later = timezone.now() + timedelta(minutes=5)
    # `second` lost its task to `first`, but first's task is still queued and will train it.
    assert TrainingJob.objects.recover_queue(later) == []
    assert len(broker.pending()) == 1
    assert not TrainingJob.objects.get(pk=second.pk).logs.filter(message__contains="missing").exists()
