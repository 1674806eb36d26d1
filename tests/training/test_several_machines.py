"""Two training machines on one queue and no shared disk: two real `qcluster` processes, each with a work folder
and an (empty) media folder of its own, sharing only the database, the broker and an S3 bucket (moto_server).

Each "machine" keeps its own clip cache, feature cache, job folders and GPU claims. One of them is killed with
SIGKILL in the middle of a long job, the way a machine dies: the job is failed as "worker lost" by the reaper,
and the other machine runs the rest of the queue, including the task the dead one had already pulled. Every job
runs exactly once. On Redis, the broker a set-up of several machines uses (the killed-worker recovery of a single
machine runs on both brokers in test_qcluster.py; this test would add minutes to every CI run for each broker).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from datasets_app.models import Clip
from registry_app.models import ModelVersion
from tests.factories import DatasetFactory
from tests.ops.servers import start_qcluster, stop, wait_for
from tests.training.conftest import TINY, add_clips
from training_app.models import JobLog, TrainingJob
from training_app.tasks import reap_stale_jobs

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")

# Long enough that a busy worker is never taken for a dead one (the reaper runs every two seconds here), short
# enough that the dead machine's job is reaped soon: the test waits this long after the kill. A live worker beats
# every 5 s in every phase (export included); sampled every 0.25 s during this test on this 2-core machine at load
# 4, the oldest heartbeat of a running job was 5.4 s (exporting). It was 45 s, which cost 25 s of every run.
HEARTBEAT_STALE_SECONDS = 20


def machine_env(subprocess_env: dict, broker, root: Path) -> dict:
    work, media = root / "work", root / "media"
    work.mkdir(parents=True)
    return {**subprocess_env, **broker.env(), "AUDIOML_WORK_DIR": str(work), "MEDIA_ROOT": str(media),
            "FILE_UPLOAD_TEMP_DIR": str(work / "uploads"),
            "HEARTBEAT_STALE_SECONDS": str(HEARTBEAT_STALE_SECONDS)}


def files_under(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def jobs_by_pk(*jobs: TrainingJob) -> dict[int, TrainingJob]:
    return {job.pk: job for job in TrainingJob.objects.filter(pk__in=[job.pk for job in jobs])}


def starts(job: TrainingJob) -> list[str]:
    started = JobLog.objects.filter(job=job, message__startswith="Started on worker")
    return list(started.values_list("message", flat=True))


def work_files(env: dict, folder: str) -> set[str]:
    return files_under(Path(env["AUDIOML_WORK_DIR"]) / folder)


def clip_log(job: TrainingJob) -> str:
    return JobLog.objects.filter(job=job, message__startswith="Clips: ").values_list("message", flat=True).get()


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_two_machines_share_one_queue_and_the_survivor_takes_over_when_one_dies(
        s3_storage, subprocess_env, broker, settings, tmp_path):
    settings.HEARTBEAT_STALE_SECONDS = HEARTBEAT_STALE_SECONDS  # the reaper this test runs in its own process
    dataset = DatasetFactory(name="tones")
    add_clips(dataset, "low", 6, 300.0)
    add_clips(dataset, "high", 6, 1500.0)
    env_a = machine_env(subprocess_env, broker, tmp_path / "machine-a")
    env_b = machine_env(subprocess_env, broker, tmp_path / "machine-b")
    long_job = TrainingJob.objects.create_job(dataset, "long", "quick", {**TINY, "epochs": 1000}, None)
    short_jobs = [TrainingJob.objects.create_job(dataset, f"short-{n}", "quick", TINY, None) for n in range(3)]

    machine_a = start_qcluster(env_a, tmp_path / "machine-a.log")
    machine_b = None
    try:
        wait_for(lambda: len(TrainingJob.objects.get(pk=long_job.pk).epochs) >= 1, 180, "machine A's first epoch",
                 tmp_path / "machine-a.log", interval=0.5)
        worker_a = TrainingJob.objects.get(pk=long_job.pk).worker
        machine_b = start_qcluster(env_b, tmp_path / "machine-b.log")
        wait_for(lambda: TrainingJob.objects.filter(pk=short_jobs[0].pk, status="running").exists(), 180,
                 "machine B to start the next job", tmp_path / "machine-b.log", interval=0.5)

        os.killpg(machine_a.pid, signal.SIGKILL)  # machine A dies: cluster, pusher and worker at once
        machine_a.wait(timeout=10)

        def queue_done() -> bool:
            reap_stale_jobs()  # what the default cluster runs every minute
            return not TrainingJob.objects.filter(pk__in=[job.pk for job in short_jobs],
                                                  status__in=["queued", "running"]).exists()

        wait_for(queue_done, 420, "machine B to run the rest of the queue", tmp_path / "machine-b.log", interval=2)
    finally:
        if machine_a.poll() is None:
            os.killpg(machine_a.pid, signal.SIGKILL)
            machine_a.wait(timeout=10)
        if machine_b is not None:
            stop(machine_b)

    jobs = jobs_by_pk(long_job, *short_jobs)
    lost = jobs[long_job.pk]
    assert lost.status == "failed" and lost.error.startswith(f"worker lost: worker {worker_a} sent no heartbeat")
    assert not ModelVersion.objects.filter(job_id=lost.pk).exists()
    workers_b = {jobs[job.pk].worker for job in short_jobs}
    assert [jobs[job.pk].status for job in short_jobs] == ["succeeded"] * 3, [jobs[j.pk].error for j in short_jobs]
    assert worker_a not in workers_b  # machine B ran every short job, the one A had pulled included
    for job in (long_job, *short_jobs):
        assert len(starts(job)) == 1, starts(job)  # each job ran exactly once

    # Each machine has caches of its own: B fetched the clips from the bucket and computed their features once
    # for itself, then reused both; what A had fetched and computed before it died was never B's.
    first, *later = sorted(short_jobs, key=lambda job: jobs[job.pk].started_at)
    assert clip_log(first).startswith("Clips: 0 already in this machine's clip cache, 12 fetched")
    assert all(clip_log(job).startswith("Clips: 12 already in this machine's clip cache, 0 fetched") for job in later)
    assert jobs[first.pk].metrics["feature_cache"] == {"hits": 0, "misses": 12}
    assert all(jobs[job.pk].metrics["feature_cache"] == {"hits": 12, "misses": 0} for job in later)
    clips = set(Clip.objects.values_list("audio", flat=True))
    assert work_files(env_a, "clip-cache") == work_files(env_b, "clip-cache") == clips  # once per machine
    features_a = work_files(env_a, "feature-cache")
    assert features_a and features_a == work_files(env_b, "feature-cache")
    assert work_files(env_b, "jobs") == set()  # B's job folders removed once their versions were registered

    # Nothing but the bucket held the data: the models are there, and no media folder received a file.
    for job in short_jobs:
        assert f"models/{job.model_name}/v1/model.pt2" in s3_storage.keys("models/")
    for folder in (Path(env_a["MEDIA_ROOT"]), Path(env_b["MEDIA_ROOT"]), Path(settings.MEDIA_ROOT)):
        assert files_under(folder) == set()
