"""Real processes for the operations tests and the benchmarks: a django-q2 cluster, a gunicorn web server and an
S3-compatible object store (moto_server, the S3 API over HTTP on loopback).

Both run against the caller's own database and media folder (the `subprocess_env` fixture, or a benchmark's
`site_env`). They are stopped the way the pitfalls note says: SIGTERM to the main process only, then waiting;
SIGKILL to the process group only if that does not end it. bench/ uses this module too, so tests and
benchmarks start and stop servers the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psycopg
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def start_qcluster(env: dict, log_path: Path, cluster: str = "training") -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env={**env, "Q_CLUSTER_NAME": cluster},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


MOTO_SERVER = Path(sys.executable).with_name("moto_server")
S3_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "audioml-test", "AWS_SECRET_ACCESS_KEY": "audioml-test-secret",
                       "AWS_S3_REGION_NAME": "us-east-1"}


def start_moto_server(log_path: Path) -> tuple[subprocess.Popen, str]:
    """moto_server on a free loopback port, once it answers S3 requests: (process, endpoint URL). Raises (never
    skips) when it cannot start: the storage tests must run against a real S3 endpoint."""
    if not MOTO_SERVER.exists():
        raise AssertionError(f"{MOTO_SERVER} is missing: install moto[server] (a test dependency)")
    port = free_port()
    log = open(log_path, "ab")
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"moto_server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{endpoint}/", timeout=2):
                return process, endpoint
        except urllib.error.HTTPError:
            return process, endpoint  # any HTTP answer means it serves
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    stop(process)
    raise AssertionError(f"moto_server did not answer within 60 s:\n{log_path.read_text()[-4000:]}")


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    boto3.client(
        "s3", endpoint_url=endpoint, region_name=S3_TEST_CREDENTIALS["AWS_S3_REGION_NAME"],
        aws_access_key_id=S3_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=bucket)


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    """The environment that points a process (settings.py reads it) at a bucket on the endpoint."""
    return {**S3_TEST_CREDENTIALS, "AWS_STORAGE_BUCKET_NAME": bucket, "AWS_S3_ENDPOINT_URL": endpoint,
            "AWS_S3_ADDRESSING_STYLE": "path"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(
    env: dict,
    log_path: Path,
    port: int,
    workers: int = 4,
    threads: int = 2,
    timeout: int = 120,
    up_statuses: tuple[int, ...] = (200,),
) -> subprocess.Popen:
    """gunicorn as in production (several workers, threads), bound to loopback only, once /api/health answers
    with one of `up_statuses` (503 is "up" for a caller that runs no task broker or worker).

    Without a control socket of its own, gunicorn 27 takes over the per-user one of any other instance."""
    log = open(log_path, "ab")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "audioml.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), "--timeout", str(timeout),
            "--graceful-timeout", "10", "--no-control-socket",
        ],
        cwd=ROOT, env={**env, "DEBUG": "False"}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        if health_status(port) in up_statuses:
            return process
        time.sleep(0.3)
    stop(process)
    raise AssertionError(f"gunicorn did not answer within 60 s:\n{log_path.read_text()[-4000:]}")


def health_status(port: int) -> int:
    """The HTTP status of GET /api/health, or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for(condition, timeout: float, what: str, log_path: Path | None = None, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    log = f"; log:\n{log_path.read_text()[-4000:]}" if log_path and log_path.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{log}")


@contextmanager
def writes_blocked(table: str):
    """Hold a lock that lets other connections read ``table`` but not write it (on SQLite: the whole database), so
    a server's request can be caught at the moment it needs to write there."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        lock = sqlite3.connect(settings_dict["NAME"], timeout=5, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
    else:
        lock = psycopg.connect(
            host=settings_dict["HOST"] or "localhost", port=settings_dict["PORT"] or 5432, user=settings_dict["USER"],
            password=settings_dict["PASSWORD"] or None, dbname=settings_dict["NAME"],
        )
        lock.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        try:
            yield
        finally:
            lock.rollback()
            lock.close()
