"""The panel's side of traffic, the prediction log and feedback: forms, errors next to fields, what each role sees."""

from __future__ import annotations

import pytest

from datasets_app.models import Clip
from registry_app.models import Alias, PredictionLog, RegisteredModel
from registry_app.prediction_log import record_prediction
from tests.factories import DatasetFactory


@pytest.fixture
def versions(register):
    versions = [register("keywords") for _ in range(3)]
    Alias.point(versions[0].model, "production", versions[0])
    return versions


def _log(version, answer: str, primary=None, **fields):
    return record_prediction(version.model, version, {"label": answer, "scores": {answer: 0.8}, "time_ms": 12.0,
                                                      "file": "a.wav"},
                             ref="production", arm="shadow" if primary else "primary", primary=primary, **fields)


def test_the_traffic_form_splits_and_shadows_and_the_page_and_history_show_it(approver_client, versions):
    response = approver_client.post("/models/keywords/aliases/production/traffic/",
                                    {"split_version": 2, "split_percent": 10, "shadow_version": 3, "note": "canary"})
    assert response.status_code == 302
    alias = Alias.objects.get(name="production")
    assert alias.traffic() == {"split": {"version": 2, "percent": 10}, "shadow": 3}
    html = approver_client.get("/models/keywords/").content.decode()
    assert "90%" in html and "10%" in html and ">split</span>" in html and ">shadow</span>" in html
    assert "split: none → <strong>v2 10%</strong>" in html and "shadow: none → <strong>v3</strong>" in html

    response = approver_client.post("/models/keywords/aliases/production/traffic/",
                                    {"split_version": "", "shadow_version": "", "note": "done"})
    assert response.status_code == 302
    assert Alias.objects.get(name="production").traffic() == {"split": None, "shadow": None}


def test_a_split_without_a_share_is_refused_next_to_the_field(approver_client, versions):
    response = approver_client.post("/models/keywords/aliases/production/traffic/", {"split_version": 2})
    assert response.status_code == 422
    html = response.content.decode()
    assert "has-error" in html and "Give the split version" in html
    assert Alias.objects.get(name="production").traffic()["split"] is None


def test_the_model_page_compares_versions_on_live_traffic(viewer_client, versions):
    v1, v2, v3 = versions
    for answer in ["high"] * 3 + ["low"]:
        _log(v3, "high", primary=_log(v1, answer))
    html = viewer_client.get("/models/keywords/").content.decode()
    assert "Live traffic" in html and "Shadow agreement" in html
    assert "agreed with <strong>v1</strong>" in html and "75%" in html
    assert "12.0 ms" in html
    assert "Flag wrong" not in html and "Traffic…" not in html and "Log settings" not in html  # a viewer's page


def test_flag_in_the_panel_then_accept_in_the_review_queue(trainer_client, versions, settings):
    v1 = versions[0]
    v1.model.set_log_settings({"log_audio": True})
    from registry_app import inference
    from tests.registry.conftest import wav_upload

    request = inference.prepare(v1.model)
    result, decoded = inference.predict_decoded(request, *inference.decode_source(request, wav_upload(), "door.wav"))
    inference.log_and_shadow(request, result, decoded, user=None, channel="panel")
    row = PredictionLog.objects.get(pk=result["prediction_id"])
    DatasetFactory(name="doors")

    page = trainer_client.get(f"/models/keywords/predictions/{row.pk}/flag/").content.decode()
    assert "answered <strong>“high”</strong>" in page and "<audio" in page
    missing = trainer_client.post(f"/models/keywords/predictions/{row.pk}/flag/", {"dataset": "doors"})
    assert missing.status_code == 422 and "This field is required" in missing.content.decode()
    response = trainer_client.post(f"/models/keywords/predictions/{row.pk}/flag/",
                                   {"label": "low", "note": "door slam", "dataset": "doors"})
    assert response.status_code == 302
    queue = trainer_client.get("/review/doors/").content.decode()
    assert "door slam" in queue and "Accept into doors" in queue
    assert "<strong>1</strong>" in trainer_client.get("/review/").content.decode()

    response = trainer_client.post(f"/review/doors/{row.pk}/", {"decision": "accept", "label": "slam"})
    assert response.status_code == 302
    clip = Clip.objects.get(dataset__name="doors")
    assert clip.label == "slam" and "door slam" in clip.notes
    assert "accepted" in trainer_client.get("/review/doors/").content.decode()
    again = trainer_client.post(f"/review/doors/{row.pk}/", {"decision": "accept"}, follow=True).content.decode()
    assert "is not waiting for review" in again


def test_log_settings_are_checked_next_to_their_field(approver_client, versions):
    response = approver_client.post("/models/keywords/logging/", {"log_predictions": "on", "log_retention_days": 0,
                                                                  "log_audio_max_bytes": 100000})
    assert response.status_code == 422
    assert "has-error" in response.content.decode()
    assert RegisteredModel.objects.get(name="keywords").log_retention_days == 30
    response = approver_client.post("/models/keywords/logging/", {"log_retention_days": 7, "log_audio_max_bytes": 5000})
    assert response.status_code == 302
    model = RegisteredModel.objects.get(name="keywords")
    assert (model.log_predictions, model.log_retention_days, model.log_audio_max_bytes) == (False, 7, 5000)
