"""The whole journey on object storage, with no disk shared between the web side and the worker: upload through
the API, train in a real `manage.py qcluster` whose MEDIA_ROOT is an empty folder of its own, predict from the
registered version loaded out of the bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets_app.models import Clip
from registry_app import inference
from tests.ops.servers import start_qcluster, stop, wait_for
from tests.registry.conftest import wav_upload
from tests.training.conftest import TINY
from training_app.models import TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def test_upload_train_in_a_qcluster_and_predict_with_only_the_bucket_shared(
    api, s3_storage, subprocess_env, settings, tmp_path
):
    assert api.post("/api/datasets", {"name": "tones"}, content_type="application/json").status_code == 201
    for label, frequency in (("low", 300.0), ("high", 2400.0)):
        files = [wav_upload(f"{label}-{i}.wav", frequency * (1 + 0.03 * i), seed=i) for i in range(6)]
        report = api.post("/api/datasets/tones/clips", {"files": files, "label": label}).json()
        assert report["accepted"] == 6, report
    assert s3_storage.keys("clips/") == set(Clip.objects.values_list("audio", flat=True))

    response = api.post("/api/jobs", {"dataset": "tones", "model_name": "tones", "preset": "quick",
                                       "overrides": TINY}, content_type="application/json")
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]

    # The worker's machine: its own work folder and an empty media folder of its own (nothing shared but the
    # database and the bucket).
    worker_work, worker_media = tmp_path / "worker-work", tmp_path / "worker-media"
    worker_env = {**subprocess_env, "AUDIOML_WORK_DIR": str(worker_work), "MEDIA_ROOT": str(worker_media),
                  "FILE_UPLOAD_TEMP_DIR": str(worker_work / "uploads")}
    log_path = tmp_path / "qcluster.log"
    cluster = start_qcluster(worker_env, log_path)
    try:
        job = wait_for(
            lambda: (found := TrainingJob.objects.get(pk=job_id)).status in ("succeeded", "failed") and found,
            240, "the job to finish", log_path,
        )
    finally:
        stop(cluster)
    assert job.status == "succeeded", f"{job.error}\n{job.traceback}"
    messages = list(job.logs.values_list("message", flat=True))
    assert any(m.startswith("Clips: 0 already in this machine's clip cache, 12 fetched") for m in messages), messages
    cached = {p.relative_to(worker_work / "clip-cache").as_posix() for p in files_under(worker_work / "clip-cache")}
    assert cached == set(Clip.objects.values_list("audio", flat=True))

    models = s3_storage.keys("models/tones/")
    assert {f"models/tones/v1/{name}" for name in ("model.pt2", "model.onnx", "weights.pt")} <= models

    inference.cache.clear()
    loads = inference.cache.loads
    prediction = api.post("/api/models/tones/predict", {"files": [wav_upload("probe.wav", 2400.0)]})
    assert prediction.status_code == 200, prediction.content
    assert prediction.json()["version"] == 1
    assert prediction.json()["results"][0]["label"] == "high"
    assert inference.cache.loads == loads + 1  # read from the bucket, checked and loaded

    # No disk was shared: nothing landed in either media folder.
    assert files_under(Path(settings.MEDIA_ROOT)) == []
    assert files_under(worker_media) == []
