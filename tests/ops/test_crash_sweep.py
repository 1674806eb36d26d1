"""A real gunicorn SIGKILLed in the middle of an upload and of a zip import leaves clip files without rows,
temporary upload files and an extraction folder; the sweeper then leaves exactly the rows' files, and the same
files uploaded again are stored under their own names (no renamed copies beside orphans)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from audioml.models import ApiToken
from datasets_app.models import Clip, clip_storage_name
from tests.audio import distinct_wav, zip_bytes
from tests.factories import AdminFactory, DatasetFactory
from tests.ops.load import multipart
from tests.ops.servers import ROOT, free_port, start_gunicorn, stop, wait_for, writes_blocked

UPLOADED = 24  # 3-second clips: a request over FILE_UPLOAD_MAX_MEMORY_SIZE, so Django spools every file to disk
ARCHIVED = 6


def clip_inserts_blocked():
    return writes_blocked("datasets_app_clip")


def post(url: str, token: str, fields: dict, files: list[tuple[str, str, bytes]]) -> int:
    body, content_type = multipart(fields, files)
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Authorization": f"Bearer {token}", "Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0  # the server died under it


def clip_files(media: Path) -> set[str]:
    return {str(path.relative_to(media)) for path in (media / "clips").rglob("*") if path.is_file()}


@pytest.mark.django_db(transaction=True)
def test_after_gunicorn_is_killed_mid_upload_the_sweeper_leaves_exactly_the_rows_files(subprocess_env, settings, tmp_path):
    media, work = Path(settings.MEDIA_ROOT), Path(settings.WORK_DIR)
    upload_temp = Path(settings.FILE_UPLOAD_TEMP_DIR)
    admin = AdminFactory(username="ops")
    _, token = ApiToken.issue(admin, "crash")
    dataset = DatasetFactory(name="crash")
    uploads = [("files", f"take-{n}.wav", distinct_wav(n, seconds=3.0)) for n in range(UPLOADED)]
    archive = zip_bytes({f"door/{n}.wav": distinct_wav(100 + n) for n in range(ARCHIVED)})
    log = tmp_path / "gunicorn.log"
    port = free_port()
    server = start_gunicorn(subprocess_env, log, port, workers=1, threads=4)
    base = f"http://127.0.0.1:{port}/api/datasets/crash"
    try:
        # A clip stored before the crash (this also records the token's use, so no write precedes the uploads).
        assert post(f"{base}/clips", token, {"label": "before"}, [("files", "before.wav", distinct_wav(999))]) == 200
        with clip_inserts_blocked():
            requests = [
                threading.Thread(target=post, args=(f"{base}/clips", token, {"label": "yes"}, uploads)),
                threading.Thread(target=post, args=(f"{base}/import", token, {}, [("file", "doors.zip", archive)])),
            ]
            for request in requests:
                request.start()
            wait_for(
                lambda: len(clip_files(media)) == 1 + UPLOADED + ARCHIVED and list((work / "ingest").glob("archive-*")),
                60, "both requests to write their clip files", log,
            )
            os.killpg(server.pid, signal.SIGKILL)  # the master and its worker, mid-request
            server.wait(timeout=10)
        for request in requests:
            request.join(timeout=30)
    finally:
        stop(server)

    rows = set(Clip.objects.values_list("audio", flat=True))
    assert len(rows) == 1
    assert len(clip_files(media)) == 1 + UPLOADED + ARCHIVED  # files without rows
    assert len(list(upload_temp.glob("*.upload*"))) >= UPLOADED  # Django's spooled upload files
    assert list((work / "ingest").glob("archive-*"))  # the extraction folder

    swept = subprocess.run(
        [sys.executable, "manage.py", "sweep", "--min-age", "0"], cwd=ROOT, env=subprocess_env,
        capture_output=True, text=True, timeout=120,
    )
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout.splitlines()[-1])["removed"] >= UPLOADED * 2 + ARCHIVED + 1

    assert clip_files(media) == rows
    assert not list(upload_temp.iterdir())
    assert not list((work / "ingest").iterdir())
    assert not (media / ".incoming").exists() or not list((media / ".incoming").iterdir())

    # Sent again, the same files are stored under their own content-addressed names.
    again = Client(headers={"Authorization": f"Bearer {token}"}).post(
        "/api/datasets/crash/clips",
        {"files": [SimpleUploadedFile(name, data) for _, name, data in uploads], "label": "yes"},
    )
    assert again.status_code == 200, again.content
    stored = set(Clip.objects.filter(dataset=dataset, label="yes").values_list("audio", flat=True))
    expected = {clip_storage_name(dataset.pk, digest) for digest in Clip.objects.filter(label="yes").values_list("content_hash", flat=True)}
    assert len(stored) == UPLOADED and stored == expected
    assert clip_files(media) == rows | stored
