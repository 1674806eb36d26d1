"""A real training cluster (manage.py qcluster) killed with SIGKILL mid-training, reaped, and replaced; on each broker."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SETUP = """
import json, django
django.setup()
from tests.factories import DatasetFactory
from tests.training.conftest import TINY, add_clips
from training_app.models import TrainingJob
dataset = DatasetFactory(name="tones")
add_clips(dataset, "low", 6, 300.0)
add_clips(dataset, "high", 6, 1500.0)
long_job = TrainingJob.objects.create_job(dataset, "long", "quick", {**TINY, "epochs": 1000}, None)
next_job = TrainingJob.objects.create_job(dataset, "next", "quick", TINY, None)
print(json.dumps([long_job.pk, next_job.pk]))
"""

REAP = """
import json, django
django.setup()
from datetime import timedelta
from django.conf import settings
from django.utils import timezone
from training_app.models import TrainingJob
later = timezone.now() + timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 1)
print(json.dumps(TrainingJob.objects.reap_stale(later)))
"""


def run_script(script: str, env: dict) -> str:
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


def start_cluster(env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env={**env, "Q_CLUSTER_NAME": "training"},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def job_row(db_path: Path, pk: int) -> dict:
    with sqlite3.connect(db_path, timeout=30) as db:
        db.row_factory = sqlite3.Row
        row = db.execute(
            "SELECT status, error, worker, json_array_length(epochs) AS epochs FROM training_app_trainingjob "
            "WHERE id = ?", (pk,)
        ).fetchone()
    return dict(row)


def wait_for(condition, timeout: float, what: str, log_path: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; cluster log:\n{log_path.read_text()[-4000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # the main process only: it stops its workers cleanly
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_a_killed_worker_is_reaped_and_the_next_worker_runs_the_queue(tmp_path, broker):
    db_path = tmp_path / "cluster.sqlite3"
    log_path = tmp_path / "qcluster.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "audioml.settings",
        "DATABASE_URL": f"sqlite:///{db_path}",
        "AUDIOML_DATA_DIR": str(tmp_path / "data"),
        "HEARTBEAT_STALE_SECONDS": "10",
        "PYTHONPATH": str(ROOT),
        **broker.env(),
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=180)
    long_pk, next_pk = json.loads(run_script(SETUP, env))

    first = start_cluster(env, log_path)
    try:
        wait_for(lambda: (job_row(db_path, long_pk)["epochs"] or 0) >= 1, 120, "the first epoch", log_path)
        os.killpg(first.pid, signal.SIGKILL)  # the machine dies: cluster, pusher and worker at once
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=10)

    assert job_row(db_path, long_pk)["status"] == "running"
    assert job_row(db_path, next_pk)["status"] == "queued"
    # The dead cluster had already pulled the next task too: the ORM broker locks it for `retry` (hours), Redis
    # has handed it out for good (popped off the list).
    if broker.name == "orm":
        with sqlite3.connect(db_path) as db:
            held = db.execute("SELECT COUNT(*) FROM django_q_ormq WHERE lock > datetime('now', '+1 hour')").fetchone()
        assert held[0] == 2
    else:
        assert broker.pending() == []
    assert json.loads(run_script(REAP, env)) == [long_pk]
    lost = job_row(db_path, long_pk)
    assert lost["status"] == "failed"
    assert lost["error"].startswith(f"worker lost: worker {lost['worker']} sent no heartbeat")

    second = start_cluster(env, log_path)
    try:
        wait_for(lambda: job_row(db_path, next_pk)["status"] in ("succeeded", "failed", "cancelled"), 150,
                 "the next job to finish", log_path)
    finally:
        stop(second)
    finished = job_row(db_path, next_pk)
    assert finished["status"] == "succeeded", finished
    assert finished["epochs"] == 2
    assert job_row(db_path, long_pk)["status"] == "failed"  # never started a second time
