"""Detection end to end: a wake-word job, calibrated threshold stored with the version and used by predictions."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django_q.models import OrmQ

from registry_app.models import ModelVersion, RegisteredModel
from tests.audio import wav_bytes, write_wav
from tests.tasks.conftest import copy_artifacts
from tests.training_ml.conftest import other_sound, wake_sound
from training_app import tasks
from training_app.models import TrainingJob
from registry_app.models import PredictionLog

WAKES_AT = (1.0, 4.5)


def long_recording(seconds: float = 7.0, wakes_at=WAKES_AT) -> np.ndarray:
    """Quiet noise with steady tones and noise bursts every 1.5 s, and the wake sweep at each time in ``wakes_at``."""
    rng = np.random.default_rng(5)
    wave = 0.02 * rng.standard_normal(int(seconds * 16000))
    for index, start in enumerate(np.arange(0.2, seconds - 0.5, 1.5)):
        if any(abs(start - wake) < 0.8 for wake in wakes_at):
            continue
        sound = other_sound(index)
        wave[int(start * 16000) : int(start * 16000) + len(sound)] += sound
    for start in wakes_at:
        sound = wake_sound()
        wave[int(start * 16000) : int(start * 16000) + len(sound)] += sound
    return np.clip(wave, -1, 1).astype("float32")


def upload(name: str, samples: np.ndarray) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, wav_bytes(samples), content_type="audio/wav")


@pytest.fixture
def trained(wakewords, create):
    response = create("wakewords", "detection", model_name="marlo", positive_label="wake", epochs=8, noise=False)
    assert response.status_code == 201, response.content
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert tasks.run_training_job(job.pk) == "succeeded", job.error
    job.refresh_from_db()
    return job


def test_detection_without_a_positive_label_is_422_naming_the_field(wakewords, create):
    queued = OrmQ.objects.count()

    response = create("wakewords", "detection")

    assert response.status_code == 422
    assert response.json()["field"] == "positive_label"
    assert response.json()["detail"] == "positive_label: name the label(s) to detect, comma-separated"
    assert TrainingJob.objects.count() == 0 and OrmQ.objects.count() == queued


def test_detection_of_a_label_the_dataset_lacks_is_422_with_the_problem(wakewords, create):
    response = create("wakewords", "detection", positive_label="hey_marlo")

    assert response.status_code == 422
    assert response.json()["problems"] == [
        "detection needs clips of the positive label 'hey_marlo' and of at least one other label; "
        "none are labelled 'hey_marlo'"
    ]
    assert TrainingJob.objects.count() == 0


def test_worker_calibrates_a_threshold_that_the_version_keeps_and_predictions_use_and_pages_show(
        trained, api, admin_client, tmp_path):
    """One training run for everything a trained detector must do (the pages trained a second one before)."""
    metrics = trained.metrics
    calibration = metrics["calibration"]
    assert 0.0 <= calibration["threshold"] <= 1.0 and calibration["max_false_accepts_per_hour"] == 0.5
    # The dataset has no background recordings: each split's negative clips make its stream.
    assert calibration["source"].startswith("the validation split's negative clips joined")
    assert metrics["held_out"]["source"].startswith("the test split's negative clips joined")
    assert metrics["det"] and metrics["roc"]["points"] and metrics["baseline"]["roc_auc"] is not None
    assert {"val_auc", "val_loss"} <= set(trained.epochs[0])
    version = ModelVersion.objects.get(job=trained)
    assert version.model.task == "detection" and version.labels == ["wake"]
    assert version.metrics["prediction"]["threshold"] == calibration["threshold"]
    config = json.loads((copy_artifacts(version, tmp_path / "artifacts") / "config.json").read_text())
    assert config["prediction"]["threshold"] == calibration["threshold"]
    assert config["output"]["name"] == "score"
    assert version.headline_metric()[0].endswith("false rejects at the calibrated threshold")
    _predictions_find_the_wake_word_at_its_times_with_the_calibrated_threshold(version, api, tmp_path)
    _pages_show_the_det_curve_and_try_it_the_score_over_time(trained, admin_client)


def _predictions_find_the_wake_word_at_its_times_with_the_calibrated_threshold(version, api, tmp_path):
    response = api.post("/api/models/marlo/predict", {"files": [upload("long.wav", long_recording()),
                                                                  upload("quiet.wav", long_recording(wakes_at=()))]})

    assert response.status_code == 200, response.content
    long, quiet = response.json()["results"]
    assert long["detected"] is True and long["threshold"] == pytest.approx(version.metrics["prediction"]["threshold"])
    assert long["threshold_source"] == "calibrated"
    assert len(long["events"]) == 2
    for event, wake in zip(long["events"], WAKES_AT, strict=True):
        assert wake - 0.5 <= event["start"] <= wake + 0.4 and event["end"] > event["start"]
        assert event["score"] >= long["threshold"]
    assert long["scores_over_time"]["hop"] == 0.1 and len(long["scores_over_time"]["scores"]) == 66
    assert quiet["detected"] is False and quiet["events"] == []
    logged = PredictionLog.objects.filter(pk__in=[long["prediction_id"], quiet["prediction_id"]]).order_by("pk")
    assert [(row.answer, row.score) for row in logged] == [("detected", long["score"]), ("not detected", quiet["score"])]

    overridden = api.post("/api/models/marlo/predict", {"files": [upload("q.wav", long_recording(wakes_at=()))],
                                                        "threshold": "0"}).json()["results"][0]
    assert overridden["threshold"] == 0.0 and overridden["threshold_source"] == "request" and overridden["detected"]

    out = StringIO()
    call_command("predict", "marlo", str(write_wav(tmp_path / "cli.wav", long_recording())), stdout=out)
    line = json.loads(out.getvalue())
    assert line["detected"] is True and len(line["events"]) == 2


@pytest.mark.parametrize("threshold", ["1.5", "-0.1"])
def test_threshold_outside_zero_to_one_is_422_naming_the_field(db, api, threshold):
    RegisteredModel.objects.create(name="marlo", task="detection")
    response = api.post("/api/models/marlo/predict", {"files": [upload("a.wav", long_recording())],
                                                      "threshold": threshold})
    assert response.status_code == 422
    assert response.json()["field"] == "threshold"


def _pages_show_the_det_curve_and_try_it_the_score_over_time(trained, admin_client):
    job_page = admin_client.get(f"/training/jobs/{trained.pk}/").content.decode()
    assert "Detection error trade-off" in job_page and "Calibrated threshold" in job_page
    assert "no background recordings" in job_page
    # Which audio each figure comes from: the threshold from validation audio, the reported figures from the test's.
    figures = job_page[job_page.index('class="table detection-figures"'):]
    figures = figures[: figures.index("</table>")]
    assert "<strong>Calibration</strong>" in figures and "positive validation clips" in figures
    assert "the validation split&#x27;s negative clips joined" in figures
    assert "<strong>Reported</strong>" in figures and "(test, untouched by the calibration)" in figures
    assert "the test split&#x27;s negative clips joined" in figures
    assert job_page.count('class="xy"') == 2 and 'class="dot marker"' in job_page  # DET with its point, ROC
    assert "Detection error trade-off" in admin_client.get("/models/marlo/v1/").content.decode()

    response = admin_client.post("/models/marlo/try/", {"audio": upload("try.wav", long_recording())},
                                 headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "Score over time" in html and "threshold-line" in html and "2 detections" in html


def test_panel_names_the_missing_positive_label_next_to_its_field(wakewords, admin_client):
    form = {"dataset": "wakewords", "model_name": "marlo", "task": "detection", "preset": "quick"}

    response = admin_client.post("/training/new/", form)

    assert response.status_code == 200 and TrainingJob.objects.count() == 0
    html = response.content.decode()
    field = html[html.index('id="id_positive_label"'):]
    assert "Name the label(s) to detect, comma-separated" in field[: field.index("</div>") + 200]

    response = admin_client.post("/training/new/", {**form, "positive_label": "wake", "epochs": 2})
    assert response.status_code == 302
    assert TrainingJob.objects.get().config["positive_label"] == ["wake"]


def test_background_recordings_join_the_snapshot_and_become_the_negative_stream(db, api, create, tmp_path):
    """On a 22.05 kHz dataset (the model works at 16 kHz), with recordings uploaded at 44.1 kHz in stereo: converted
    on import with ffmpeg to the dataset's rate, then read by the job resampled to the model's, a block at a time."""
    import soundfile

    from tests.tasks.conftest import at_rate, wakeword_dataset

    wakewords = wakeword_dataset(sample_rate=22050)
    for name, seconds in (("street", 20.0), ("kitchen", 30.0)):
        mono = at_rate(long_recording(seconds, wakes_at=()), 44100)
        path = tmp_path / f"{name}.wav"
        soundfile.write(path, np.stack([mono, 0.5 * mono], axis=1), 44100, subtype="PCM_16")
        with path.open("rb") as handle:
            uploaded = api.post("/api/datasets/wakewords/clips", {"files": [handle], "background": "true"})
        assert uploaded.status_code == 200, uploaded.content
    stored = wakewords.clips.filter(kind="background").order_by("id")
    assert [(c.source_sample_rate, c.source_channels, c.duration) for c in stored] == [(44100, 2, 20.0), (44100, 2, 30.0)]
    assert {soundfile.info(c.audio.path).samplerate for c in stored} == {22050}

    response = create("wakewords", "detection", model_name="marlo", positive_label="wake", epochs=2)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["data"]["background_recordings"] == 2 and body["data"]["background_seconds"] == 50.0
    assert body["data"]["clips"] == 30 and body["snapshot_clips"] == 32
    job = TrainingJob.objects.get()
    assert [entry["kind"] for entry in job.snapshot if "kind" in entry] == ["background", "background"]
    assert tasks.run_training_job(job.pk) == "succeeded", job.error
    job.refresh_from_db()
    # The kitchen is held out whole; the street trains on its first 15 s and calibrates on its last 5 s.
    assert job.metrics["stream"]["source"] == "1 held-out background recording"
    assert job.metrics["held_out"]["hours"] == 30.0 / 3600
    assert job.metrics["calibration"]["source"] == "the last quarter of 1 training background recording"
    assert job.metrics["calibration"]["hours"] == 5.0 / 3600
    assert job.metrics["stream"]["recordings"] == 1
    assert job.metrics["split"]["train"] + job.metrics["split"]["val"] + job.metrics["split"]["test"] == 30
    classification = create("wakewords", "classification", model_name="words").json()
    assert classification["snapshot_clips"] == 30  # classification never sees background recordings


def test_an_undecodable_background_recording_is_a_4xx_naming_its_field_and_the_reason(db, api, admin_client):
    """The API answers 422 naming `files` with the per-file reason; the panel's form (no JavaScript) shows it."""
    from datasets_app.models import Clip
    from tests.factories import DatasetFactory

    DatasetFactory(name="wakewords", sample_rate=22050)

    bogus = SimpleUploadedFile("room.wav", b"RIFF\x00\x00\x00\x00WAVE not a recording at all", content_type="audio/wav")
    response = api.post("/api/datasets/wakewords/clips", {"files": [bogus], "background": "true"})

    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "files" and body["files"][0]["code"] == "undecodable"
    assert body["files"][0]["reason"] == "not a decodable audio file (no audio format recognised)"
    bogus.seek(0)
    page = admin_client.post("/datasets/wakewords/upload/", {"files": [bogus], "background": "on"})
    assert "room.wav" in page.content.decode() and "not a decodable audio file" in page.content.decode()
    assert not Clip.objects.filter(kind="background").exists()
