"""The web process renders pages without importing torch: checked in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.test import Client
user = get_user_model().objects.create_superuser("web", password="x")
client = Client()
client.force_login(user)
from datasets_app.models import Dataset
from training_app.models import TrainingJob
from registry_app.models import Alias, ModelVersion, RegisteredModel
job = TrainingJob.objects.create(dataset=Dataset.objects.create(name="web"), model_name="web", status="succeeded")
registered = RegisteredModel.objects.create(name="web")
version = ModelVersion.objects.create(model=registered, version=1, job=job, snapshot_hash="0" * 64, labels=["a", "b"],
    metrics={"evaluated_on": "val", "accuracy": 0.9, "val": {"accuracy": 0.9}}, feature_config={"sample_rate": 16000, "clip_samples": 16000})
Alias.objects.create(model=registered, name="production", version=version)
pages = ["/models/web/", "/models/web/v1/", "/api/models", "/api/models/web/versions", "/datasets/", "/datasets/web/", "/datasets/web/stats/", "/datasets/web/settings/", "/api/datasets", "/api/datasets/web/clips", "/training/", "/training/new/", "/api/jobs", "/models/", "/account/tokens/", "/api/health", "/api/openapi.json"]
statuses = {page: client.get(page).status_code for page in pages}
assert all(code == 200 for code in statuses.values()), statuses
# The model card, and the augmentation preview, whose torch work runs in a child process.
for page in ["/models/web/v1/card/", "/models/web/v1/card.md", "/api/models/web/versions/1/card"]:
    assert client.get(page).status_code == 200, page
from tests.factories import ClipFactory
tones = Dataset.objects.create(name="tones")
for index in range(6):
    ClipFactory(dataset=tones, label="high" if index % 2 else "low", frequency=300.0 + 400 * index, seconds=0.5)
preview = client.post("/training/new/preview/", {"dataset": "tones", "task": "classification", "preset": "quick",
                      "clip_seconds": "0.5", "time_shift": "on", "noise": "on", "spec_augment": "on"},
                      headers={"HX-Request": "true"})
assert preview.status_code == 200 and b"Variant 4" in preview.content, preview.content[:500]
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "torchaudio"))
print("LOADED", loaded)
sys.exit(1 if loaded else 0)
"""


def test_rendering_pages_does_not_import_torch(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "audioml.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path}/web.sqlite3",
        "AUDIOML_DATA_DIR": str(tmp_path / "data"),
        "DEBUG": "True",
        "ALLOWED_HOSTS": "testserver",
    }
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LOADED []" in result.stdout
