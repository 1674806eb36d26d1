"""A real training cluster under faults: a worker paused past the heartbeat limit, a cluster killed with SIGKILL.

Both run `manage.py qcluster` on the test's database (the `subprocess_env` fixture) and act on its processes
with real signals.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import OperationalError, connection

from registry_app.models import ModelVersion, RegisteredModel
from tests.factories import DatasetFactory
from tests.ops.servers import start_qcluster, stop, wait_for
from tests.training.conftest import TINY, add_clips
from training_app.models import JobLog, TrainingJob

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")


@pytest.fixture
def tones_db(subprocess_env):
    dataset = DatasetFactory(name="tones")
    add_clips(dataset, "low", 6, 300.0)
    add_clips(dataset, "high", 6, 1500.0)
    return dataset


def queue(dataset, model_name: str, **overrides) -> TrainingJob:
    job = TrainingJob.objects.create_job(dataset, model_name, "quick", {**TINY, **overrides}, None)
    return TrainingJob.objects.get(pk=job.pk)  # create_job enqueues once the (auto)commit happened


def job_now(job: TrainingJob) -> TrainingJob:
    return TrainingJob.objects.get(pk=job.pk)


def worker_pid(job: TrainingJob) -> int:
    return int(job_now(job).worker.rsplit(":", 1)[1])


def living_processes_in_group(group: int) -> list[int]:
    """Processes of a process group that are alive (zombies waiting to be reaped do not count)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state != "Z":
            alive.append(int(entry.name))
    return alive


@contextmanager
def short_lock_wait():
    """Give up on a database lock after half a second instead of waiting for it."""
    sqlite = connection.vendor == "sqlite"
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 500" if sqlite else "SET lock_timeout = '500ms'")
    try:
        yield
    finally:
        with connection.cursor() as cursor:  # django-q2's broker may have replaced the connection meanwhile
            cursor.execute("PRAGMA busy_timeout = 30000" if sqlite else "SET lock_timeout = 0")


def pause_and_reap(pid: int) -> list[int]:
    """SIGSTOP the worker (a VM pause, swap, a hung mount) past the heartbeat limit, then run the reaper.

    A worker stopped in the middle of a database write keeps its lock (on SQLite, the whole database), which
    no reaper could get past either; that pause is undone and tried again at another moment.
    """
    for _ in range(5):
        os.kill(pid, signal.SIGSTOP)
        time.sleep(3)
        try:
            with short_lock_wait():
                return TrainingJob.objects.reap_stale()
        except OperationalError:
            os.kill(pid, signal.SIGCONT)
            time.sleep(1)
    raise AssertionError("the worker held a database lock at every pause")


def test_a_worker_paused_past_the_heartbeat_limit_finds_its_job_reaped_and_registers_nothing(
    tones_db, subprocess_env, settings, tmp_path
):
    log_path = tmp_path / "qcluster.log"
    job = queue(tones_db, "paused", epochs=60)
    cluster = start_qcluster(subprocess_env, log_path)
    try:
        wait_for(lambda: len(job_now(job).epochs) >= 1, 120, "the first epoch", log_path)
        pid = worker_pid(job)
        settings.HEARTBEAT_STALE_SECONDS = 2
        try:
            assert pause_and_reap(pid) == [job.pk]
        finally:
            os.kill(pid, signal.SIGCONT)
        reaped_error = job_now(job).error
        assert reaped_error.startswith("worker lost:")

        wait_for(
            lambda: ModelVersion.objects.exists()
            or job_now(job).logs.filter(message__contains="no longer its own").exists(),
            120, "the resumed worker to stop (or to register a version)", log_path,
        )
        # The worker carried on only until its next check: it registered nothing and left the job as reaped.
        assert not ModelVersion.objects.exists() and not RegisteredModel.objects.exists()
        finished = job_now(job)
        assert (finished.status, finished.error) == ("failed", reaped_error)
        assert len(finished.epochs) < 60
        assert not finished.working_dir().exists()
        stopped = finished.logs.get(message__contains="no longer its own")
        assert stopped.level == JobLog.Level.WARNING
        assert not finished.logs.filter(message__startswith="Succeeded").exists()

        # The worker itself is healthy: the next job trains and registers.
        after = queue(tones_db, "after")
        wait_for(lambda: job_now(after).is_finished, 120, "the next job", log_path)
        assert job_now(after).status == "succeeded"
        assert list(ModelVersion.objects.values_list("job_id", flat=True)) == [after.pk]
    finally:
        stop(cluster)


def test_killing_the_cluster_process_stops_its_workers_and_the_job_is_failed(tones_db, subprocess_env, tmp_path):
    log_path = tmp_path / "qcluster.log"
    long_job = queue(tones_db, "long", epochs=1000)
    next_job = queue(tones_db, "next")
    cluster = start_qcluster(subprocess_env, log_path)
    try:
        wait_for(lambda: len(job_now(long_job).epochs) >= 1, 120, "the first epoch", log_path)
        assert len(living_processes_in_group(cluster.pid)) >= 4  # main, sentinel, pusher, monitor, worker

        os.kill(cluster.pid, signal.SIGKILL)  # only the main process, as `kill -9 <pid>` does
        cluster.wait(timeout=10)

        # Sentinel, pusher, monitor and worker follow it instead of running on as orphans of PID 1.
        wait_for(lambda: not living_processes_in_group(cluster.pid), 30, "the cluster's other processes to end",
                 log_path)
    finally:
        if living_processes_in_group(cluster.pid):
            os.killpg(cluster.pid, signal.SIGKILL)
        stop(cluster)

    # The worker recorded why it stopped instead of leaving the job running for the reaper.
    lost = job_now(long_job)
    assert lost.status == "failed", (lost.status, lost.error)
    assert lost.error.startswith("WorkerStopped: the worker was stopped by SIGTERM"), lost.error
    assert len(lost.epochs) < 1000
    time.sleep(2)
    assert job_now(next_job).status == "queued"  # nobody is left to run it
    assert not ModelVersion.objects.exists()
