"""CI's PostgreSQL run leaves out the tests that touch no database (tests/db_free.py); none that touches one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.db_free import UNREACHABLE_DATABASE_URL, touches_database

ROOT = Path(__file__).resolve().parents[2]


class FakeItem:
    def __init__(self, fixturenames, marked: bool = False):
        self.fixturenames = fixturenames
        self.marked = marked

    def get_closest_marker(self, name):
        return object() if self.marked and name == "django_db" else None


@pytest.mark.parametrize("fixturenames", [
    ["db", "_django_db_helper", "django_db_setup"],
    ["subprocess_env", "transactional_db", "_django_db_helper", "django_db_setup"],
    ["live_server", "page"],
    ["django_db_setup"],
])
def test_any_database_fixture_in_the_closure_counts(fixturenames):
    assert touches_database(FakeItem(["request", "tmp_path", *fixturenames]))


def test_the_mark_counts_and_an_item_without_fixtures_is_kept():
    assert touches_database(FakeItem(["tmp_path"], marked=True))
    assert touches_database(object())
    assert not touches_database(FakeItem(["request", "tmp_path", "settings", "monkeypatch"]))


KNOWN = {
    # a client persona needs a user row; `db` is in the signature of a test that picks its persona at run time
    "tests/roles/test_roleless_and_grant.py::test_home_sends_users_with_a_role_to_their_first_section"
    "[admin_client-/datasets/]": True,
    # a real qcluster on the test's database, through subprocess_env (transactional_db)
    "tests/training/test_worker_faults.py::test_killing_the_cluster_process_stops_its_workers_and_the_job_is_failed":
        True,
    # Chromium against live_server
    "tests/e2e/test_user_journey.py::test_log_in_upload_fix_train_promote_and_try_a_clip": True,
    # pure audio decoding
    "tests/datasets/test_decode.py::test_stereo_wav_is_mixed_down_to_mono": False,
    # a qcluster on a SQLite file of its own, whatever database the run uses
    "tests/training/test_qcluster.py::test_a_killed_worker_is_reaped_and_the_next_worker_runs_the_queue[orm]": False,
}


def test_known_tests_are_sorted_by_what_they_touch(request):
    """Checked on the items this run collected (the whole suite in CI's SQLite run); the known tests this run did not
    collect are collected by a pytest of their own with --db-tests-only, as CI's PostgreSQL run does."""
    collected = {item.nodeid: item for item in request.session.items}
    missing = [nodeid for nodeid in KNOWN if nodeid not in collected]
    for nodeid in KNOWN:
        if nodeid in collected:
            assert touches_database(collected[nodeid]) is KNOWN[nodeid], nodeid
    if missing:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "--db-tests-only", *missing],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        kept = {line.strip() for line in result.stdout.splitlines() if "::" in line}
        for nodeid in missing:
            assert (nodeid in kept) is KNOWN[nodeid], result.stdout + result.stderr


def test_a_database_free_tests_subprocess_cannot_open_the_inherited_database():
    assert os.environ["DATABASE_URL"] == UNREACHABLE_DATABASE_URL
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.db import connection; "
         "connection.ensure_connection()"],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "audioml.settings"}, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "OperationalError" in result.stderr, result.stderr[-2000:]
