"""The prediction log: what is written per answer, the audio setting and its cap, retention, the live comparison."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from registry_app.models import Alias, PredictionLog
from registry_app.prediction_log import EXPIRY_SCHEDULE_NAME, ensure_expiry_schedule, expire_logs, live_comparison
from tests.registry.conftest import wav_upload


def _predict(client, **data):
    response = client.post("/api/models/keywords/predict", {"files": [wav_upload(), wav_upload("hum.wav", 300.0)], **data})
    assert response.status_code == 200, response.content
    return response.json()


def test_each_answer_is_logged_with_version_caller_answer_score_and_latency(api, register, admin_user):
    register()
    body = _predict(api, key="kiosk-3")
    rows = {row.pk: row for row in PredictionLog.objects.all()}
    assert len(rows) == 2
    for result in body["results"]:
        row = rows[result["prediction_id"]]
        assert (row.version_number, row.ref, row.arm, row.role, row.channel) == (1, "latest", "latest", "primary", "api")
        assert (row.user, row.caller_key, row.file_name) == (admin_user, "kiosk-3", result["file"])
        assert row.answer == result["label"]
        assert row.score == pytest.approx(result["scores"][result["label"]])
        assert row.latency_ms == pytest.approx(result["time_ms"])
        assert row.audio == "" and row.audio_size == 0  # audio is off by default
    listed = api.get("/api/models/keywords/predictions?key=kiosk-3").json()
    assert listed["count"] == 2
    assert {item["answer"] for item in listed["items"]} == {"high", "low"}


def test_a_model_can_turn_its_log_off(api, register):
    register()
    response = api.patch("/api/models/keywords", json.dumps({"log_predictions": False}), content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["log_predictions"] is False
    body = _predict(api)
    assert "prediction_id" not in body["results"][0]
    assert not PredictionLog.objects.exists()


def test_audio_is_kept_when_asked_for_and_only_under_the_cap(api, register):
    register()
    api.patch("/api/models/keywords", json.dumps({"log_audio": True, "log_audio_max_bytes": 20_000}),
              content_type="application/json")
    short = api.post("/api/models/keywords/predict", {"files": [wav_upload(seconds=0.5)]}).json()["results"][0]
    long = api.post("/api/models/keywords/predict", {"files": [wav_upload(seconds=2.0)]}).json()["results"][0]
    kept = PredictionLog.objects.get(pk=short["prediction_id"])
    assert kept.audio.startswith("predictions/") and default_storage.exists(kept.audio)
    assert kept.audio_size == default_storage.size(kept.audio) > 0
    audio = api.get(f"/api/models/keywords/predictions/{kept.pk}/audio")
    assert audio.status_code == 200 and audio["Content-Type"] == "audio/wav"
    assert b"".join(audio.streaming_content)[:4] == b"RIFF"
    over = PredictionLog.objects.get(pk=long["prediction_id"])
    assert over.audio == "" and "over the model's cap of 20,000" in over.audio_note  # 2 s at 16 kHz is 64 kB
    assert api.get(f"/api/models/keywords/predictions/{over.pk}/audio").status_code == 404


def test_invalid_log_settings_are_422_and_change_nothing(api, register):
    register()
    response = api.patch("/api/models/keywords", json.dumps({"log_retention_days": 0}), content_type="application/json")
    assert response.status_code == 422
    assert api.get("/api/models/keywords").json()["log_retention_days"] == 30


def test_retention_deletes_old_rows_and_their_audio_but_keeps_items_waiting_for_review(register, django_capture_on_commit_callbacks):
    from tests.factories import DatasetFactory

    version = register()
    model = version.model
    model.set_log_settings({"log_audio": True, "log_retention_days": 7})
    from registry_app import inference

    request = inference.prepare(model)
    rows = []
    for age_days in (10, 10, 3):
        result, decoded = inference.predict_decoded(request, *inference.decode_source(request, wav_upload(), "a.wav"))
        inference.log_and_shadow(request, result, decoded)
        row = PredictionLog.objects.get(pk=result["prediction_id"])
        PredictionLog.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(days=age_days))
        rows.append(row)
    old, queued, recent = rows
    queued.flag(label="low", dataset=DatasetFactory(name="kws"))
    assert all(default_storage.exists(row.audio) for row in rows)

    assert expire_logs(dry_run=True) == {"keywords": 1}
    assert PredictionLog.objects.count() == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert expire_logs() == {"keywords": 1}
    assert set(PredictionLog.objects.values_list("pk", flat=True)) == {queued.pk, recent.pk}
    assert not default_storage.exists(old.audio)  # the file went with its row
    assert default_storage.exists(queued.audio)
    queued.dismiss()
    with django_capture_on_commit_callbacks(execute=True):
        assert expire_logs() == {"keywords": 1}  # reviewed: it expires like the rest
    assert list(PredictionLog.objects.values_list("pk", flat=True)) == [recent.pk]


def test_the_expiry_runs_on_a_schedule_of_the_default_cluster(db, settings):
    from django_q.models import Schedule

    settings.PREDICTION_LOG_EXPIRY_MINUTES = 15
    ensure_expiry_schedule()
    schedule = Schedule.objects.get(name=EXPIRY_SCHEDULE_NAME)
    assert (schedule.func, schedule.minutes, schedule.cluster) == ("registry_app.prediction_log.scheduled_expiry", 15, None)


def test_live_comparison_counts_latency_answers_and_shadow_agreement(register):
    from registry_app.prediction_log import record_prediction

    v1, v2, v3 = register(), register(), register()
    model = v1.model
    answers = ["high"] * 6 + ["low"] * 4

    def log(version, answer, latency, primary=None, arm="primary"):
        return record_prediction(model, version, {"label": answer, "scores": {answer: 0.9}, "time_ms": latency},
                                 ref="production", arm=arm, primary=primary)

    for index, answer in enumerate(answers):
        row = log(v1, answer, latency=10.0 + index)
        log(v3, "high", latency=30.0, primary=row, arm="shadow")  # agrees on the 6 "high" answers
    log(v2, "low", latency=50.0, arm="split")
    old = log(v1, "low", latency=1.0)
    PredictionLog.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))

    live = live_comparison(model, hours=24)
    assert (live["total"], live["answered"]) == (21, 11)
    by_version = {(entry["version"], entry["role"]): entry for entry in live["versions"]}
    primary = by_version[(1, "primary")]
    assert (primary["requests"], primary["share"]) == (10, pytest.approx(10 / 11, abs=1e-4))
    assert primary["latency_ms"] == {"p50": 14.5, "p95": pytest.approx(18.55)}
    assert primary["answers"] == [{"answer": "high", "count": 6, "share": 0.6}, {"answer": "low", "count": 4, "share": 0.4}]
    assert by_version[(2, "primary")]["arms"] == {"split": 1}
    assert by_version[(3, "shadow")]["share"] is None
    assert live["agreement"] == [{"shadow": 3, "primary": 1, "compared": 10, "agreed": 6, "rate": 0.6}]


def test_live_comparison_through_the_api(api, register):
    v1 = register()
    Alias.point(v1.model, "production", v1)
    _predict(api)
    body = api.get("/api/models/keywords/live?hours=6").json()
    assert body["hours"] == 6 and body["answered"] == 2
    assert body["versions"][0]["version"] == 1 and body["versions"][0]["requests"] == 2
    assert api.get("/api/models/keywords/live?hours=0").status_code == 422


@pytest.mark.parametrize("task, result, answer", [
    ("regression", {"score": 0.734}, "0.7–0.8"),
    ("detection", {"detected": True, "score": 0.91}, "detected"),
    ("transcription", {"text": "turn on the lights"}, "turn on the lights"),
])
def test_every_task_answer_has_a_summary_the_log_counts(task, result, answer):
    from registry_app.prediction_log import answer_of, answers_agree

    assert answer_of(task, result)[0] == answer
    if task == "regression":
        assert answers_agree(task, ("0.6–0.7", 0.69), ("0.7–0.8", 0.71))  # close scores agree across bins
        assert not answers_agree(task, ("0.1–0.2", 0.1), ("0.7–0.8", 0.7))


def test_model_page_links_to_the_log_by_its_entry_count(api, register, admin_client):
    register()
    html = admin_client.get("/models/keywords/").content.decode()
    assert "No entries yet" in html and "All 0 entries" not in html
    _predict(api)
    html = admin_client.get("/models/keywords/").content.decode()
    assert "All 2 entries</a>" in html
