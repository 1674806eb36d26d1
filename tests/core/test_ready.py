from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def test_ready_without_a_worker_is_503_and_says_why(db):
    response = Client().get("/api/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok" and body["broker"] == "ok" and body["storage"] == "ok"
    assert body["workers"].startswith("error: no worker has reported")
    assert body["clusters"] == []


def test_ready_sees_a_live_training_worker(subprocess_env):
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT, env={**subprocess_env, "Q_CLUSTER_NAME": "training"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180  # a loaded CI machine can take a while to start a cluster
        body = {}
        while time.monotonic() < deadline:
            response = Client().get("/api/ready")
            body = response.json()
            if response.status_code == 200:
                break
            time.sleep(0.5)
        assert body["status"] == "ok", (body, worker.poll())
        assert body["workers"] == "ok"
        assert body["clusters"][0]["workers"] >= 1
        assert body["clusters"][0]["status"] in ("Idle", "Working", "Starting")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
