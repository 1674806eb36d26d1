"""A worker killed with SIGKILL while it copies a model's artifacts into the registry.

The worker is a real process (`run_training_job` in a subprocess on the test's database) whose media storage
stops halfway through `model.onnx` and waits to be killed, so the kill lands in the middle of the copy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from django.core.files.storage import FileSystemStorage
from django.utils import timezone

from registry_app.models import ARTIFACT_FILES, ModelVersion, RegisteredModel
from tests.factories import DatasetFactory
from tests.ops.servers import ROOT, wait_for
from tests.training.conftest import TINY, add_clips
from training_app import tasks
from training_app.models import TrainingJob

STALLING_STORAGE = f"{__name__}.StallingStorage"

WORKER = """
import sys
from django.conf import settings
settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": sys.argv[2]}}
import django
django.setup()
from training_app import tasks
print(tasks.run_training_job(int(sys.argv[1])))
"""


class StallingStorage(FileSystemStorage):
    """Writes the first 4 KiB of model.onnx, leaves a marker file, then hangs until the process is killed."""

    def _save(self, name, content):
        if name.endswith("/model.onnx"):
            target = Path(self.path(name))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.read(4096))
            Path(os.environ["STALL_MARKER"]).write_text(name)
            signal.pause()
        return super()._save(name, content)


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_a_worker_killed_while_copying_artifacts_leaves_nothing_the_next_registration_trips_over(
    subprocess_env, settings, tmp_path
):
    dataset = DatasetFactory(name="tones")
    add_clips(dataset, "low", 6, 300.0)
    add_clips(dataset, "high", 6, 1500.0)
    job = TrainingJob.objects.create_job(dataset, "crashy", "quick", TINY, None, enqueue=False)
    marker = tmp_path / "stalled"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(job.pk), STALLING_STORAGE], cwd=ROOT,
        env={**subprocess_env, "STALL_MARKER": str(marker), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: marker.exists() or worker.poll() is not None, 180, "the artifact copy to begin")
        assert worker.poll() is None, worker.stdout.read().decode()[-3000:]
    finally:
        worker.kill()  # SIGKILL in the middle of model.onnx
        worker.wait(timeout=10)

    # What the crash left: a partial file of a version no row knows; no model listed without versions.
    media = Path(settings.MEDIA_ROOT)
    assert "models/crashy/v1/model.pt2" in files_under(media)
    assert not RegisteredModel.objects.exists() and not ModelVersion.objects.exists()
    assert TrainingJob.objects.get(pk=job.pk).status == "running"  # never succeeded: the reaper ends it
    assert TrainingJob.objects.reap_stale(timezone.now() + timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 1))

    retry = TrainingJob.objects.get(pk=job.pk).rerun(None)
    assert tasks.run_training_job(retry.pk) == "succeeded"
    version = ModelVersion.objects.get()
    assert (version.model.name, version.version, version.job_id) == ("crashy", 1, retry.pk)
    # Stored under the names a version's files always have, replacing the stale ones instead of beside them.
    assert [entry["path"] for entry in version.artifacts] == [f"models/crashy/v1/{name}" for name in ARTIFACT_FILES]
    assert [path for path in files_under(media) if path.startswith("models/")] == sorted(
        f"models/crashy/v1/{name}" for name in ARTIFACT_FILES
    )
    assert all(version.verify_artifact(name) for name in ARTIFACT_FILES)
