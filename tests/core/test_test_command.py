"""The test command (`bash scripts/test.sh`, the README's and CI's) and the Redis the broker tests need: it starts a
private loopback redis-server when none answers at TEST_REDIS_URL; when it can start none, the Redis tests skip
saying why; outside it, they fail saying what to do."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.brokers import redis_connection

ROOT = Path(__file__).resolve().parents[2]
ITSELF = "tests/core/test_test_command.py::test_a_redis_server_answers_for_the_broker_tests"


def test_a_redis_server_answers_for_the_broker_tests():
    """What every Redis broker test starts with (tests/brokers.py): this run's Redis answers."""
    connection = redis_connection()
    connection.set("audioml-test-command-probe", b"1", ex=5)
    assert connection.get("audioml-test-command-probe") == b"1"


def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens on it once the probe is closed


@pytest.fixture
def venv(tmp_path) -> Path:
    """The test command's virtual environment, as scripts/_setup.sh finds it: this Python, installed for this
    pyproject.toml (so the command installs nothing)."""
    root = tmp_path / "venv"
    (root / "bin").mkdir(parents=True)
    python = root / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (root / ".audioml-installed").write_text(hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest() + "\n")
    return root


def run(command: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_the_test_command_starts_a_private_redis_when_none_answers_and_stops_it_after(venv):
    unreachable = f"redis://127.0.0.1:{closed_loopback_port()}/3"

    result = run(["bash", "scripts/test.sh", ITSELF, "-q", "-p", "no:cacheprovider"], AUDIOML_VENV=str(venv),
                 TEST_REDIS_URL=unreachable)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    started = re.search(r"No Redis at (\S+): started a private redis-server on 127\.0\.0\.1:(\d+) for this run", output)
    assert started and started.group(1) == unreachable, output[-3000:]
    assert "1 passed" in output and "skipped" not in output
    with pytest.raises(OSError):  # stopped with the run
        socket.create_connection(("127.0.0.1", int(started.group(2))), timeout=2).close()


def test_without_a_redis_the_broker_tests_skip_saying_why_only_when_the_test_command_could_start_none():
    unreachable = f"redis://127.0.0.1:{closed_loopback_port()}/3"
    pytest_command = [sys.executable, "-m", "pytest", ITSELF, "-q", "-rs", "-p", "no:cacheprovider"]

    skipped = run(pytest_command, TEST_REDIS_URL=unreachable,
                  AUDIOML_TEST_REDIS_SKIP=f"no Redis at {unreachable} and no redis-server to start")
    failed = run(pytest_command, TEST_REDIS_URL=unreachable, AUDIOML_TEST_REDIS_SKIP="")

    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout[-3000:]
    assert (f"Redis broker test skipped: no Redis at {unreachable} and no redis-server to start"
            in skipped.stdout), skipped.stdout[-3000:]
    assert failed.returncode == 1 and "1 failed" in failed.stdout, failed.stdout[-3000:]
    assert f"Redis at {unreachable} is unreachable" in failed.stdout and "scripts/test.sh" in failed.stdout
