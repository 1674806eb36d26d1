"""Predictions through POST /api/models/{name}/predict: refs, windows, the model cache and bad inputs."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from registry_app import inference
from registry_app.models import Alias
from tests.registry.conftest import wav_upload


def predict(client, name="keywords", files=None, **data):
    files = files if files is not None else [wav_upload()]
    return client.post(f"/api/models/{name}/predict", {"files": files, **data})


def test_prediction_returns_label_scores_and_which_version_answered(api, register):
    register()
    response = predict(api, files=[wav_upload("beep.wav", 2400.0), wav_upload("hum.wav", 300.0)])
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["model"], body["version"], body["ref"], body["succeeded"], body["failed"]) == ("keywords", 1, "latest", 2, 0)
    beep, hum = body["results"]
    assert beep["file"] == "beep.wav" and hum["file"] == "hum.wav"
    for result in (beep, hum):
        assert set(result["scores"]) == {"high", "low"}
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert result["label"] == max(result["scores"], key=result["scores"].get)
        assert (result["model"], result["version"], result["ref"], result["windows"]) == ("keywords", 1, "latest", 1)
        assert result["duration"] == pytest.approx(0.5)
        assert result["time_ms"] > 0
        assert "error" not in result
    assert beep["label"] == "high"
    assert hum["label"] == "low"


def test_an_answer_under_the_unsure_threshold_says_so_and_keeps_its_top_label(api, trained_artifacts, tmp_path):
    """The version's open-set threshold (its metrics' "prediction") reaches the API's answer: `unsure` and `top_label`
    (no unknown label here, so the label stays the top score's)."""
    import json
    import shutil

    from registry_app.models import ModelVersion
    from tests.factories import TrainingJobFactory

    artifacts = shutil.copytree(trained_artifacts, tmp_path / "artifacts")
    metrics = json.loads((artifacts / "metrics.json").read_text())
    metrics["prediction"] = {"unsure_below": 1.01}  # a threshold every keyword answer is under
    (artifacts / "metrics.json").write_text(json.dumps(metrics))
    ModelVersion.objects.register_from_job(TrainingJobFactory(model_name="keywords"), artifacts)
    result = predict(api, files=[wav_upload("beep.wav", 2400.0)]).json()["results"][0]
    assert (result["label"], result["top_label"], result["unsure"]) == ("high", "high", True)


def test_default_is_the_production_alias_over_the_latest_version(api, register):
    v1 = register()
    register()
    assert predict(api).json()["version"] == 2
    Alias.point(v1.model, "production", v1)
    body = predict(api).json()
    assert (body["version"], body["ref"]) == (1, "production")
    assert body["results"][0]["ref"] == "production"


@pytest.mark.parametrize("ref, version", [("v1", 1), ("2", 2), ("staging", 1)])
def test_explicit_version_or_alias_picks_the_version(api, register, ref, version):
    v1 = register()
    register()
    Alias.point(v1.model, "staging", v1)
    body = predict(api, ref=ref).json()
    assert body["version"] == version
    assert body["ref"] == (ref if not ref.isdigit() else f"v{ref}")


def test_long_clip_is_scored_over_sliding_windows_and_says_so(api, register):
    register()
    result = predict(api, files=[wav_upload("long.wav", 300.0, seconds=2.0)]).json()["results"][0]
    # 0.5 s windows every 0.25 s over 2 s: starts at 0, 0.25, … 1.5.
    assert result["windows"] == 7
    assert result["aggregation"] == "mean"
    assert result["clip_seconds"] == 0.5
    assert result["duration"] == pytest.approx(2.0)
    assert result["label"] == "low"


def test_short_clip_is_padded_into_one_window(api, register):
    register()
    result = predict(api, files=[wav_upload("short.wav", 2400.0, seconds=0.2)]).json()["results"][0]
    assert result["windows"] == 1
    assert "aggregation" not in result
    assert result["duration"] == pytest.approx(0.2)


def test_window_starts_cover_the_whole_clip():
    assert inference.window_starts(8000, 8000) == [0]
    assert inference.window_starts(100, 8000) == [0]
    assert inference.window_starts(20000, 8000) == [0, 4000, 8000, 12000]
    assert inference.window_starts(17000, 8000) == [0, 4000, 8000, 9000]


def test_second_prediction_uses_the_cached_model(api, register):
    register()
    first = predict(api).json()
    second = predict(api).json()
    assert inference.cache.loads == 1
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["load_ms"] > 0 and second["load_ms"] == 0


def test_moving_the_alias_takes_effect_on_the_next_request(api, register):
    v1 = register()
    v2 = register()
    alias = Alias.point(v1.model, "production", v1)
    assert predict(api).json()["version"] == 1
    Alias.point(alias.model, alias.name, v2, note="promote")
    body = predict(api).json()
    assert (body["version"], body["cached"]) == (2, False)
    assert inference.cache.loads == 2
    Alias.objects.get(pk=alias.pk).rollback()
    body = predict(api).json()
    assert (body["version"], body["cached"]) == (1, True)


def test_cache_is_bounded(register, monkeypatch):
    monkeypatch.setattr(inference.cache, "capacity", 2)
    versions = [register() for _ in range(3)]
    for version in versions:
        inference.cache.get(version)
    assert len(inference.cache) == 2
    assert {key[0] for key in inference.cache.keys()} == {versions[1].pk, versions[2].pk}


def test_undecodable_file_gets_its_own_error_while_the_others_are_scored(api, register):
    register()
    bad = SimpleUploadedFile("notes.wav", b"this is not audio at all" * 20, content_type="audio/wav")
    response = predict(api, files=[wav_upload("good.wav"), bad])
    assert response.status_code == 200
    body = response.json()
    assert (body["succeeded"], body["failed"]) == (1, 1)
    good, failed = body["results"]
    assert good["label"] in ("high", "low")
    assert failed["file"] == "notes.wav"
    assert failed["error"]["status"] == 422
    assert failed["error"]["code"] == "undecodable-audio"
    assert "notes.wav" in failed["error"]["detail"]
    assert "label" not in failed


def test_all_files_undecodable_is_422_problem_with_per_file_errors(api, register):
    register()
    bad = [SimpleUploadedFile(f"bad{i}.mp3", b"\x00garbage" * 50) for i in range(2)]
    response = predict(api, files=bad)
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:audioml:problem:undecodable-audio"
    assert [result["file"] for result in body["results"]] == ["bad0.mp3", "bad1.mp3"]


def test_empty_file_is_422(api, register):
    register()
    response = predict(api, files=[SimpleUploadedFile("empty.wav", b"")])
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]


def test_no_files_is_422(api, register):
    register()
    response = api.post("/api/models/keywords/predict", {"ref": "v1"})
    assert response.status_code == 422
    assert "files" in response.json()["detail"]


@pytest.mark.parametrize(
    "name, ref, needle",
    [("nope", "", "No registered model"), ("keywords", "v7", "no version 7"), ("keywords", "canary", "no alias")],
)
def test_unknown_model_alias_or_version_is_404_problem(api, register, name, ref, needle):
    register()
    response = predict(api, name=name, ref=ref)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert needle in response.json()["detail"]
    assert inference.cache.loads == 0


def test_model_without_active_versions_is_404(api, register):
    version = register()
    version.status = "archived"
    version.save()
    response = predict(api)
    assert response.status_code == 404
    assert "no active version" in response.json()["detail"]


def test_predict_needs_staff(register, outsider_client):
    register()
    assert predict(Client()).status_code == 401
    assert predict(outsider_client).status_code == 403
