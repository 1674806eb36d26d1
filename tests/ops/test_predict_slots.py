"""Through a real gunicorn: predictions take at most PREDICT_WORKERS of a process's threads, so while one is
stuck (here: waiting on a database lock, as a slow disk or a long file would keep it) another prediction is
answered 503 at once and the probes and the panel keep answering."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import pytest

from audioml.models import ApiToken
from tests.factories import AdminFactory
from tests.ops.load import multipart
from tests.ops.servers import free_port, start_gunicorn, stop, writes_blocked
from tests.registry.conftest import wav_upload
from tests.tiny_model import TONES


def cache_writes_blocked():
    return writes_blocked("audioml_cache")


def call(url: str, token: str | None = None, files=None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if files is not None:
        data, headers["Content-Type"] = multipart({}, files)
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.django_db(transaction=True)
def test_a_stuck_prediction_holds_one_slot_and_never_starves_the_probes(subprocess_env, register, tmp_path):
    register()
    tokens = [ApiToken.issue(AdminFactory(username=f"viewer-{n}"), "slots")[1] for n in range(2)]
    port = free_port()
    server = start_gunicorn({**subprocess_env, "PREDICT_WORKERS": "1"}, tmp_path / "gunicorn.log", port, workers=1, threads=3)
    base = f"http://127.0.0.1:{port}"
    clip = wav_upload("beep.wav", TONES["high"]).read()
    try:
        for token in tokens:  # records each token's use now, so no request below needs to write it
            assert call(f"{base}/api/models/keywords", token)[0] == 200
        with ThreadPoolExecutor(max_workers=2) as pool:
            with cache_writes_blocked():
                predictions = [
                    pool.submit(call, f"{base}/api/models/keywords/predict", token, [("files", "beep.wav", clip)])
                    for token in tokens
                ]
                done, pending = wait(predictions, timeout=60, return_when=FIRST_COMPLETED)
                assert done and len(pending) == 1, "one prediction must be refused at once while the other is stuck"
                status, problem = next(iter(done)).result()
                assert status == 503, problem
                assert problem["type"] == "urn:audioml:problem:server-busy"
                health_status, health = call(f"{base}/api/health")
                assert health_status == 200 and health["database"] == "ok"
                assert not next(iter(pending)).done()
            status, body = next(iter(pending)).result(timeout=60)
        assert status == 200, body
        assert body["results"][0]["label"] == "high"
    finally:
        stop(server)
