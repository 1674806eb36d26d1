"""Bounds on the work one prediction request and one user may ask for: too long a file (413, not
`undecodable-audio`), too much audio in one request (413), too many predictions at once for one user (429) and
every prediction slot of the process busy (503), each a problem with a precise type."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from audioml.models import ApiToken
from registry_app.limits import prediction_slot
from tests.audio import wav_bytes
from tests.factories import AdminFactory
from tests.registry.conftest import wav_upload


def predict(client, files):
    return client.post("/api/models/keywords/predict", {"files": files})


def silence_wav(name: str, seconds: float, sample_rate: int = 8000) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, wav_bytes(np.zeros(int(seconds * sample_rate), dtype=np.float32), sample_rate))


def test_a_601_second_file_is_413_audio_too_long_not_undecodable(api, register):
    register()
    response = predict(api, [silence_wav("long.wav", 601)])
    assert response.status_code == 413, response.content
    problem = response.json()
    assert problem["type"] == "urn:audioml:problem:audio-too-long"
    assert "longer than 600 s" in problem["detail"] and "PREDICT_MAX_FILE_SECONDS" in problem["detail"]
    assert problem["results"][0]["error"]["code"] == "audio-too-long"


def test_a_too_long_file_among_good_ones_gets_its_own_413_error(api, register, settings):
    register()
    settings.PREDICT_MAX_FILE_SECONDS = 1.0
    response = predict(api, [wav_upload("good.wav"), silence_wav("long.wav", 2.0)])
    assert response.status_code == 200
    good, long = response.json()["results"]
    assert good["label"] in ("high", "low")
    assert long["error"]["status"] == 413 and long["error"]["code"] == "audio-too-long"


def test_more_audio_in_one_request_than_allowed_is_413_for_the_whole_request(api, register, settings):
    register()
    settings.PREDICT_MAX_REQUEST_SECONDS = 1.2
    within = predict(api, [wav_upload("a.wav", seconds=0.5), wav_upload("b.wav", 300.0, seconds=0.5)])
    assert within.status_code == 200
    response = predict(api, [wav_upload(f"{n}.wav", 300.0 + n, seconds=0.5) for n in range(3)])
    assert response.status_code == 413
    problem = response.json()
    assert problem["type"] == "urn:audioml:problem:prediction-too-large"
    assert "1.2 s" in problem["detail"] and "PREDICT_MAX_REQUEST_SECONDS" in problem["detail"]


def test_a_user_with_too_many_predictions_running_gets_429(api, register, admin_user, settings):
    register()
    settings.PREDICT_MAX_CONCURRENT_PER_USER = 1
    settings.PREDICT_WORKERS = 4
    with prediction_slot(admin_user):  # the same user's other prediction, still running
        response = predict(api, [wav_upload()])
        assert response.status_code == 429
        assert response["Retry-After"]
        assert response.json()["type"] == "urn:audioml:problem:too-many-requests"
        assert "PREDICT_MAX_CONCURRENT_PER_USER" in response.json()["detail"]
        other = AdminFactory(username="someone-else")
        _, token = ApiToken.issue(other, "t")
        assert predict(Client(headers={"Authorization": f"Bearer {token}"}), [wav_upload()]).status_code == 200
    assert predict(api, [wav_upload()]).status_code == 200  # the slot is given back when a prediction ends


def test_every_prediction_slot_of_the_process_busy_is_503_at_once_and_the_probes_still_answer(api, register, settings):
    register()
    settings.PREDICT_WORKERS = 1
    someone = AdminFactory(username="long-predictor")
    with prediction_slot(someone):
        response = predict(api, [wav_upload()])
        assert response.status_code == 503
        assert response["Retry-After"]
        assert response.json()["type"] == "urn:audioml:problem:server-busy"
        assert Client().get("/api/health").status_code == 200
    assert predict(api, [wav_upload()]).status_code == 200


def test_try_it_in_the_panel_respects_the_same_limits(viewer_client, viewer_user, register, settings):
    version = register()
    settings.PREDICT_MAX_CONCURRENT_PER_USER = 1
    with prediction_slot(viewer_user):
        response = viewer_client.post(f"/models/{version.model.name}/try/", {"audio": wav_upload()})
    assert "PREDICT_MAX_CONCURRENT_PER_USER" in response.content.decode()
