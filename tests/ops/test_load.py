"""Load on a production-style server: gunicorn (4 workers x 4 threads) over PostgreSQL, on loopback.

20 clients upload 50 short clips each at the same time and none is lost: every request is answered, the
database holds exactly the 1,000 clips the answers name, and the media folder exactly their 1,000 files, each
with the audio its row's content hash describes. Then 50 pollers ask for a running job's status every second
and every answer is right. Timings are not asserted here: bench/bench_load.py measures them and writes them to
docs/benchmarks.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from django.conf import settings
from django.db import connection
from django.utils import timezone

from audioml.models import ApiToken
from datasets_app.models import Clip
from tests.factories import AdminFactory, DatasetFactory, TrainingJobFactory
from tests.ops.load import poll_load, upload_load
from tests.ops.servers import free_port, start_gunicorn, stop

CLIENTS, CLIPS_EACH = 20, 50
POLLERS, POLL_SECONDS = 50, 5.0

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(subprocess_env, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the load test runs the production setup: gunicorn over PostgreSQL")
    log_path = tmp_path / "gunicorn.log"
    port = free_port()
    process = start_gunicorn(subprocess_env, log_path, port, workers=4, threads=4)
    yield port, log_path
    stop(process)


def pcm_sha256(path: Path) -> str:
    samples, _ = sf.read(path, dtype="int16")
    return hashlib.sha256(np.ascontiguousarray(samples, dtype="<i2").tobytes()).hexdigest()


def test_concurrent_uploads_lose_nothing_and_pollers_all_get_answers(server):
    port, log_path = server
    dataset = DatasetFactory(name="load")
    _, token = ApiToken.issue(AdminFactory(username="load"), "load")

    uploads = upload_load(port, token, "load", clients=CLIENTS, clips_each=CLIPS_EACH)

    total = CLIENTS * CLIPS_EACH
    assert uploads.errors == []
    assert uploads.statuses == [200] * total, sorted(set(uploads.statuses))
    assert all((body["accepted"], body["rejected"]) == (1, 0) for body in uploads.bodies)
    answered = [body["files"][0]["clip_id"] for body in uploads.bodies]
    assert len(set(answered)) == total
    clips = list(Clip.objects.filter(dataset=dataset))
    assert sorted(clip.pk for clip in clips) == sorted(answered)
    assert {clip.label for clip in clips} == {f"client-{n:02d}" for n in range(CLIENTS)}
    assert all(Clip.objects.filter(dataset=dataset, label=f"client-{n:02d}").count() == CLIPS_EACH for n in range(CLIENTS))
    media = Path(settings.MEDIA_ROOT)
    on_disk = sorted(str(path.relative_to(media)) for path in (media / "clips").rglob("*") if path.is_file())
    assert on_disk == sorted(clip.audio.name for clip in clips)
    assert all(pcm_sha256(media / clip.audio.name) == clip.content_hash for clip in clips)
    assert not any(Path(settings.WORK_DIR).rglob("*.wav")), "no upload left a temporary file behind"

    job = TrainingJobFactory(dataset=dataset, model_name="polled", status="running", phase="training",
                             progress=42.0, started_at=timezone.now(), heartbeat_at=timezone.now(),
                             epochs=[{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "val_accuracy": 0.5,
                                      "lr": 0.004, "seconds": 2.5}])
    polls = poll_load(port, token, job.pk, pollers=POLLERS, interval=1.0, seconds=POLL_SECONDS)

    assert polls.errors == []
    assert len(polls.statuses) >= POLLERS * (POLL_SECONDS - 1)
    assert set(polls.statuses) == {200}
    assert all((body["id"], body["status"], body["progress"]) == (job.pk, "running", 42.0) for body in polls.bodies)
    log = log_path.read_text()
    assert "WORKER TIMEOUT" not in log and "Traceback" not in log, log[-3000:]
