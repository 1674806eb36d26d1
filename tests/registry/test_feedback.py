"""Feedback: flag a logged answer wrong → the dataset's review queue → accept (a real clip) or dismiss."""

from __future__ import annotations

import json

import pytest

from audioml.models import AuditEvent
from datasets_app.models import Clip
from registry_app.models import PredictionLog
from tests.factories import DatasetFactory
from tests.registry.conftest import wav_upload


def _json(client, method: str, url: str, body: dict | None = None):
    return getattr(client, method)(url, json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def logged(api, register):
    """A prediction of `keywords` (audio kept) and the `kws` dataset it can be queued for."""
    version = register()
    version.model.set_log_settings({"log_audio": True})
    body = api.post("/api/models/keywords/predict", {"files": [wav_upload("false-accept.wav", 2400.0)],
                                                      "key": "kitchen"}).json()
    return PredictionLog.objects.get(pk=body["results"][0]["prediction_id"]), DatasetFactory(name="kws")


def test_flag_review_accept_adds_a_real_clip_with_the_corrected_label_and_its_provenance(api, logged):
    row, dataset = logged
    response = _json(api, "post", f"/api/models/keywords/predictions/{row.pk}/flag",
                     {"label": "low", "note": "it was the fridge humming", "dataset": "kws"})
    assert response.status_code == 200, response.content
    flagged = response.json()
    assert (flagged["correction"], flagged["review_status"], flagged["review_dataset"]) == ("low", "pending", "kws")
    assert flagged["flagged_by"] == "admin-persona"

    queue = api.get("/api/review/kws").json()
    assert [item["id"] for item in queue["items"]] == [row.pk]

    response = _json(api, "post", f"/api/review/kws/{row.pk}/accept")
    assert response.status_code == 200, response.content
    accepted = response.json()
    assert accepted["review_status"] == "accepted"
    clip = Clip.objects.get(pk=accepted["clip_id"])
    assert (clip.dataset, clip.label, clip.status) == (dataset, "low", "active")
    assert clip.duration == pytest.approx(0.5, abs=0.01)
    assert clip.audio.storage.exists(clip.audio.name)  # a real clip: canonical WAV stored by ingestion
    assert f"From prediction #{row.pk} of keywords v1" in clip.notes
    assert "caller admin-persona · kitchen" in clip.notes and "it was the fridge humming" in clip.notes
    assert "answered “high”" in clip.notes and "accepted by admin-persona" in clip.notes
    assert api.get("/api/review/kws").json()["count"] == 0
    assert {"prediction.flag", "prediction.accept", "clip.upload"} <= set(AuditEvent.objects.values_list("action", flat=True))

    again = _json(api, "post", f"/api/review/kws/{row.pk}/accept")
    assert again.status_code == 409
    assert _json(api, "post", f"/api/models/keywords/predictions/{row.pk}/flag", {"label": "high"}).status_code == 409


def test_accept_can_correct_the_label_once_more(api, logged):
    row, _ = logged
    row.flag(label="low", dataset=logged[1])
    response = _json(api, "post", f"/api/review/kws/{row.pk}/accept", {"label": "noise"})
    assert Clip.objects.get(pk=response.json()["clip_id"]).label == "noise"


def test_dismiss_takes_the_item_out_of_the_queue_without_a_clip(api, logged):
    row, _ = logged
    row.flag(label="low", dataset=logged[1])
    response = _json(api, "post", f"/api/review/kws/{row.pk}/dismiss", {"note": "not a mistake"})
    assert response.status_code == 200 and response.json()["review_status"] == "dismissed"
    assert not Clip.objects.exists()
    assert AuditEvent.objects.get(action="prediction.dismiss").changes["note"] == [None, "not a mistake"]


def test_the_same_audio_twice_is_refused_as_a_duplicate_and_stays_in_the_queue(api, logged, register):
    row, dataset = logged
    body = api.post("/api/models/keywords/predict", {"files": [wav_upload("false-accept.wav", 2400.0)]}).json()
    twin = PredictionLog.objects.get(pk=body["results"][0]["prediction_id"])
    row.flag(label="low", dataset=dataset)
    twin.flag(label="low", dataset=dataset)
    assert _json(api, "post", f"/api/review/kws/{row.pk}/accept").status_code == 200
    response = _json(api, "post", f"/api/review/kws/{twin.pk}/accept")
    assert response.status_code == 409
    assert "duplicate" in response.json()["detail"]
    assert PredictionLog.objects.get(pk=twin.pk).review_status == "pending"
    assert dataset.clips.count() == 1


def test_flag_without_kept_audio_cannot_be_queued_but_can_be_flagged(api, register):
    register()
    DatasetFactory(name="kws")
    body = api.post("/api/models/keywords/predict", {"files": [wav_upload()]}).json()
    prediction = body["results"][0]["prediction_id"]
    refused = _json(api, "post", f"/api/models/keywords/predictions/{prediction}/flag", {"label": "low", "dataset": "kws"})
    assert refused.status_code == 422 and refused.json()["field"] == "dataset"
    flagged = _json(api, "post", f"/api/models/keywords/predictions/{prediction}/flag", {"label": "low"})
    assert flagged.status_code == 200 and flagged.json()["review_status"] == ""
    assert api.get("/api/models/keywords/predictions?flagged=true").json()["count"] == 1


@pytest.mark.parametrize("body, field", [({}, "label"), ({"score": 0.5}, "label"), ({"label": "a/b"}, "label")])
def test_a_flag_needs_the_right_kind_of_correction(api, logged, body, field):
    row, _ = logged
    response = _json(api, "post", f"/api/models/keywords/predictions/{row.pk}/flag", body)
    assert response.status_code == 422, response.content
    assert response.json()["field"] == field


def test_roles_flag_needs_trainer_or_approver_and_review_needs_trainer(logged, token_client, viewer_user, trainer_user,
                                                                         approver_user):
    row, dataset = logged
    viewer, trainer, approver = (token_client(user) for user in (viewer_user, trainer_user, approver_user))
    url = f"/api/models/keywords/predictions/{row.pk}/flag"
    assert viewer.get(f"/api/models/keywords/predictions/{row.pk}").status_code == 200
    assert _json(viewer, "post", url, {"label": "low", "dataset": "kws"}).status_code == 403
    assert _json(approver, "post", url, {"label": "low", "dataset": "kws"}).status_code == 200
    assert _json(approver, "post", f"/api/review/kws/{row.pk}/accept").status_code == 403
    assert _json(viewer, "post", f"/api/review/kws/{row.pk}/dismiss").status_code == 403
    assert _json(trainer, "post", f"/api/review/kws/{row.pk}/accept").status_code == 200
    assert dataset.clips.count() == 1


def test_an_accepted_clip_names_the_version_as_its_source_in_the_panel_and_on_the_next_model_card(
        api, logged, trainer_client, viewer_client, register):
    """Accepting from the review queue page sets Clip.source (one per version, so a card counts them together);
    the notes keep the prediction's story."""
    from training_app.snapshot import snapshot_clips, snapshot_hash

    row, dataset = logged
    row.flag(label="low", note="fridge", dataset=dataset)
    assert viewer_client.post(f"/review/kws/{row.pk}/", {"decision": "accept"}).status_code == 403
    response = trainer_client.post(f"/review/kws/{row.pk}/", {"decision": "accept", "label": "low"})
    assert response.status_code == 302
    clip = Clip.objects.get(dataset=dataset)
    assert clip.source == "feedback on keywords v1" and clip.label == "low"
    assert f"From prediction #{row.pk} of keywords v1" in clip.notes and "accepted by trainer-persona" in clip.notes
    assert "feedback on keywords v1" in trainer_client.get(f"/datasets/kws/clips/{clip.pk}/").content.decode()
    assert api.get(f"/api/datasets/kws/clips/{clip.pk}").json()["source"] == "feedback on keywords v1"

    entries = snapshot_clips(dataset)
    retrained = register(dataset=dataset, snapshot=entries, snapshot_hash=snapshot_hash(entries),
                         snapshot_size=len(entries))
    card = api.get(f"/api/models/keywords/versions/{retrained.version}/card").json()
    assert card["snapshot"]["clip_sources"] == [{"source": "feedback on keywords v1", "clips": 1}]
