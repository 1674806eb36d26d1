"""Dataset pages, uploads at the dataset's own rate and the dataset API never import torch (fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import io, sys, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.test import Client
from tests.audio import distinct_wav
user = get_user_model().objects.create_superuser("web", password="x")
client = Client()
client.force_login(user)
client.post("/datasets/", {"name": "web-check", "sample_rate": 16000})
upload = client.post("/api/datasets/web-check/clips", {"files": [io.BytesIO(distinct_wav(1))], "label": "yes"})
assert upload.status_code == 200 and upload.json()["accepted"] == 1, upload.content
clip_id = upload.json()["files"][0]["clip_id"]
pages = ["/datasets/", "/datasets/web-check/", "/datasets/web-check/stats/", "/datasets/web-check/settings/",
         f"/datasets/web-check/clips/{clip_id}/", f"/datasets/web-check/clips/{clip_id}/audio/",
         "/datasets/web-check/export/?layout=labels", "/api/datasets", "/api/datasets/web-check/clips",
         "/api/datasets/web-check/stats"]
statuses = {page: client.get(page).status_code for page in pages}
statuses["edit"] = client.post(f"/datasets/web-check/clips/{clip_id}/edit/label/", {"value": "no"}, headers={"HX-Request": "true"}).status_code
assert all(code == 200 for code in statuses.values()), statuses
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "torchaudio"))
print("LOADED", loaded)
sys.exit(1 if loaded else 0)
"""


def test_dataset_pages_and_uploads_do_not_import_torch(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "audioml.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path}/web.sqlite3",
        "AUDIOML_DATA_DIR": str(tmp_path / "data"),
        "DEBUG": "True",
        "ALLOWED_HOSTS": "testserver",
    }
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LOADED []" in result.stdout
