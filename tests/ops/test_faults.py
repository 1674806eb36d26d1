"""Faults: the disk refusing an artifact write, and the database going away under a running web server.

A worker killed with SIGKILL mid-training (the job ends `failed` with "worker lost" and the next queued job
then runs on a fresh worker) is proven with a real `manage.py qcluster` in
tests/training/test_qcluster.py::test_a_killed_worker_is_reaped_and_the_next_worker_runs_the_queue.
"""

from __future__ import annotations

import errno
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from django.core.files import File
from django.core.files.storage import FileSystemStorage
from django.db import connection

from audioml.models import ApiToken
from datasets_app.models import Clip
from registry_app.models import ModelVersion, RegisteredModel
from tests.factories import AdminFactory, ClipFactory, DatasetFactory
from tests.ops.servers import free_port, start_gunicorn, stop, wait_for
from training_app import tasks
from training_app.models import TrainingJob

# Small enough to train in a few seconds on two shared cores.
TINY = {"epochs": 2, "clip_seconds": 0.5, "batch_size": 4, "channels": 8, "early_stopping_patience": 0}
FAILING_ARTIFACT = "model.onnx"  # the third of the six artifacts the registry copies


class _RunsOutOfSpace(File):
    """Hands the storage one chunk of the file, then fails the way a full disk does."""

    def chunks(self, chunk_size=None):
        self.file.seek(0)
        yield self.file.read(4096)
        raise OSError(errno.ENOSPC, "No space left on device")


class DiskFullStorage(FileSystemStorage):
    """The media storage, on a disk that fills up while the registry writes a model's ONNX file."""

    def _save(self, name, content):
        if name.startswith("models/") and name.endswith(FAILING_ARTIFACT):
            content = _RunsOutOfSpace(content.file, name=content.name)
        return super()._save(name, content)


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


@pytest.fixture
def tones(db):
    dataset = DatasetFactory(name="tones")
    for i in range(6):
        ClipFactory(dataset=dataset, label="low", frequency=300.0 + 23.0 * i, seconds=0.5)
        ClipFactory(dataset=dataset, label="high", frequency=1500.0 + 23.0 * i, seconds=0.5)
    return dataset


def submit(dataset, user, django_capture_on_commit_callbacks) -> TrainingJob:
    with django_capture_on_commit_callbacks(execute=True):
        return TrainingJob.objects.create_job(dataset, "tones-model", "quick", TINY, user)


def test_a_full_disk_while_artifacts_are_stored_leaves_no_version_and_no_partial_files(
    tones, admin_user, settings, django_capture_on_commit_callbacks
):
    media = Path(settings.MEDIA_ROOT)
    clips_before = files_under(media)
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.DiskFullStorage"}}
    job = submit(tones, admin_user, django_capture_on_commit_callbacks)

    assert tasks.run_training_job(job.pk) == "failed"

    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error == f"OSError: [Errno {errno.ENOSPC}] No space left on device"
    assert "DiskFullStorage" not in job.error and "_save" in job.traceback
    assert ModelVersion.objects.count() == 0
    assert not RegisteredModel.objects.exists()  # no empty model left in the registry either
    assert files_under(media) == clips_before  # the clips, and not one byte of a model
    assert not job.working_dir().exists()
    assert Clip.objects.count() == 12

    # Once there is space again, the same data trains and registers as version 1 (no number was used up).
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
    retry = job.rerun(admin_user)
    assert tasks.run_training_job(retry.pk) == "succeeded"
    version = ModelVersion.objects.get()
    assert (version.model.name, version.version, version.job_id) == ("tones-model", 1, retry.pk)
    assert len(files_under(media / "models")) == 6


# ------------------------------------------------------------------------------------- database restart


def admin_connection_info() -> dict:
    settings_dict = connection.settings_dict
    return {
        "host": settings_dict["HOST"] or "localhost", "port": settings_dict["PORT"] or 5432,
        "user": settings_dict["USER"], "password": settings_dict["PASSWORD"] or None, "dbname": "postgres",
        "autocommit": True,
    }


def get_json(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_web_server_survives_a_database_restart(subprocess_env, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("simulates a PostgreSQL server restart; SQLite has no server to restart")
    database = connection.settings_dict["NAME"]
    DatasetFactory(name="steady")
    _, token = ApiToken.issue(AdminFactory(username="ops"), "restart")
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    server = start_gunicorn(subprocess_env, log_path, port, workers=3, threads=2)
    base = f"http://127.0.0.1:{port}"

    def burst(count: int = 24) -> list[tuple[int, dict]]:
        with ThreadPoolExecutor(max_workers=6) as pool:
            return list(pool.map(lambda _: get_json(f"{base}/api/datasets", token), range(count)))

    def server_backends(admin) -> set[int]:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s", (database, own_pid)
        ).fetchall()
        return {row[0] for row in rows}

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own_pid = cursor.fetchone()[0]
    try:
        with psycopg.connect(**admin_connection_info()) as admin:
            assert {status for status, _ in burst()} == {200}
            before = server_backends(admin)
            assert before, "gunicorn's workers keep persistent connections (CONN_MAX_AGE)"

            # The server goes down: no new connections, and every existing one is cut.
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            try:
                terminated = admin.execute(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> %s) AS cut", (database, own_pid)
                ).fetchone()[0]
                assert terminated >= len(before)
                wait_for(lambda: not server_backends(admin), 10, "the backends to go")
                status, health = get_json(f"{base}/api/health", token)
                assert status == 503 and health["database"].startswith("error"), health
                status, problem = get_json(f"{base}/api/datasets", token)
                assert status == 500 and problem["status"] == 500 and problem["request_id"], problem
            finally:
                admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

            # The server is back: the same gunicorn workers answer again, on new connections.
            results = burst()
            assert {status for status, _ in results} == {200}, results
            assert all([entry["name"] for entry in body["items"]] == ["steady"] for _, body in results)
            after = server_backends(admin)
            assert after and not (after & before)
        # Neither gunicorn nor any of its workers had to be restarted.
        assert server.poll() is None
        log = log_path.read_text()
        assert log.count("Booting worker with pid") == 3, log[-3000:]
        assert "WORKER TIMEOUT" not in log and "Worker exiting" not in log, log[-3000:]
    finally:
        stop(server)
