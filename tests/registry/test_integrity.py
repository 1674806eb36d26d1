"""Artifacts whose SHA-256 no longer matches are never served or loaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.core.files.storage import default_storage

from registry_app import inference
from tests.registry.conftest import wav_upload


def corrupt(entry: dict) -> None:
    path = Path(default_storage.path(entry["path"]))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def artifact(version, name):
    return next(entry for entry in version.artifacts if entry["name"] == name)


def test_download_streams_the_verified_file_with_its_checksum(api, register):
    version = register()
    entry = artifact(version, "model.onnx")
    response = api.get(f"/api/models/keywords/versions/1/artifacts/model.onnx")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == entry["sha256"] == response["X-Content-SHA256"]
    assert response["Content-Length"] == str(entry["size"])
    assert 'filename="keywords-v1-model.onnx"' in response["Content-Disposition"]


def test_damaged_artifact_download_is_refused(api, register):
    version = register()
    corrupt(artifact(version, "weights.pt"))
    response = api.get("/api/models/keywords/versions/1/artifacts/weights.pt")
    assert response.status_code == 409
    problem = response.json()
    assert problem["type"] == "urn:audioml:problem:artifact-damaged"
    assert problem["artifact"] == "weights.pt"
    assert "SHA-256" in problem["detail"]
    # The other artifacts are intact and still served.
    assert api.get("/api/models/keywords/versions/1/artifacts/config.json").status_code == 200


def test_missing_artifact_is_reported_as_damaged(api, register):
    version = register()
    default_storage.delete(artifact(version, "model.pt2")["path"])
    response = api.post("/api/models/keywords/predict", {"files": [wav_upload()]})
    assert response.status_code == 409
    assert "missing" in response.json()["detail"] or "cannot be read" in response.json()["detail"]


def test_damaged_model_is_not_loaded_for_predictions(api, register):
    version = register()
    corrupt(artifact(version, "model.pt2"))
    response = api.post("/api/models/keywords/predict", {"files": [wav_upload()]})
    assert response.status_code == 409
    assert response.json()["type"] == "urn:audioml:problem:artifact-damaged"
    assert inference.cache.loads == 0


def test_model_damaged_after_it_was_cached_is_no_longer_served(api, register):
    version = register()
    assert api.post("/api/models/keywords/predict", {"files": [wav_upload()]}).status_code == 200
    corrupt(artifact(version, "model.pt2"))
    response = api.post("/api/models/keywords/predict", {"files": [wav_upload()]})
    assert response.status_code == 409
    assert len(inference.cache) == 0


def test_damage_report_names_each_damaged_artifact(register):
    version = register()
    assert version.damage_report() == []
    corrupt(artifact(version, "metrics.json"))
    report = version.damage_report()
    assert [item["name"] for item in report] == ["metrics.json"]


def test_unknown_artifact_is_404(api, register):
    register()
    response = api.get("/api/models/keywords/versions/1/artifacts/secrets.txt")
    assert response.status_code == 404
    assert "no artifact" in response.json()["detail"]
