"""Speaking text with a registered voice: the API, the command, Try it, and the pages of a voice."""

from __future__ import annotations

import io
import json
import re
import shutil
from io import StringIO

import pytest
import soundfile
from django.core.management import CommandError, call_command

from registry_app.models import ModelVersion
from tests.factories import TrainingJobFactory
from training_app.ml.tts.training import Callbacks, Utterance, VoiceConfig, fit_voice
from training_app.voice_corpus import generate_voice_corpus
from registry_app.models import PredictionLog

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def voice_artifacts(tmp_path_factory):
    rows = generate_voice_corpus(tmp_path_factory.mktemp("corpus"), n_sentences=6, seed=7)
    out_dir = tmp_path_factory.mktemp("voice") / "artifacts"
    cfg = VoiceConfig(channels=16, encoder_layers=1, decoder_layers=1, epochs=1, batch_size=4, griffin_lim_iters=2)
    result = fit_voice(cfg, [Utterance(i, row["path"], row["transcript"]) for i, row in enumerate(rows)], out_dir,
                       Callbacks(), more_metrics=lambda metrics: {"evaluated_on": "val", "labels": []})
    assert result.files
    return out_dir


@pytest.fixture(autouse=True)
def empty_voice_cache():
    from registry_app import synthesis

    synthesis.cache.clear()
    yield
    synthesis.cache.clear()


@pytest.fixture
def voice(voice_artifacts, db) -> ModelVersion:
    job = TrainingJobFactory(model_name="voice", task="synthesis", config={"preset": "quick", "task": "synthesis"})
    return ModelVersion.objects.register_from_job(job, voice_artifacts)


def speak(api, name: str, body: dict):
    return api.post(f"/api/models/{name}/synthesize", json.dumps(body), content_type="application/json")


def test_the_api_speaks_text_as_a_wav_with_its_duration(voice, api):
    response = speak(api, "voice", {"text": "The old man found a red box. The dog ran home!"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "audio/wav"
    samples, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == 16000 and len(samples) > 0
    assert float(response["X-Audio-Duration"]) == pytest.approx(len(samples) / rate, abs=1e-3)
    assert response["X-Sentences"] == "2" and response["X-Model-Version"] == "1" and response["X-Model-Ref"] == "latest"
    logged = PredictionLog.objects.get(pk=response["X-Prediction-Id"])  # logged without its audio
    assert logged.input_text.startswith("The old man") and logged.audio == "" and logged.answer.endswith("s of speech")


def test_text_limits_and_wrong_models_are_clear_errors(voice, api, register):
    too_long = speak(api, "voice", {"text": "word " * 500})
    assert too_long.status_code == 422 and "at most 2000 are allowed" in too_long.json()["detail"]
    empty = speak(api, "voice", {"text": "  "})
    assert empty.status_code == 422 and empty.json()["detail"] == "text: text is empty"
    assert speak(api, "nobody", {"text": "hello"}).status_code == 404
    assert speak(api, "voice", {"text": "hello", "ref": "v9"}).status_code == 404
    register("keywords")
    other = speak(api, "keywords", {"text": "hello"})
    assert other.status_code == 422 and "only synthesis models speak text" in other.json()["detail"]


def test_characters_outside_the_vocabulary_are_422(voice_artifacts, db, api, tmp_path):
    config = json.loads((voice_artifacts / "config.json").read_text())
    config["text_frontend"] = {**config["text_frontend"], "mode": "characters"}
    copy = tmp_path / "characters"
    shutil.copytree(voice_artifacts, copy)
    (copy / "config.json").write_text(json.dumps(config))
    job = TrainingJobFactory(model_name="letters", task="synthesis", config={"preset": "quick"})
    ModelVersion.objects.register_from_job(job, copy)
    response = speak(api, "letters", {"text": "Room 42"})
    assert response.status_code == 422
    assert "symbols outside this voice's vocabulary (characters)" in response.json()["detail"]


def test_a_voice_does_not_take_audio_predictions(voice, api):
    response = api.post("/api/models/voice/predict", {"files": io.BytesIO(b"RIFF")})
    assert response.status_code == 422 and "synthesize" in response.json()["detail"]


def test_the_command_writes_the_wav(voice, tmp_path):
    out = StringIO()
    call_command("synthesize", "voice:1", "The old man found a red box.", "-o", str(tmp_path / "out.wav"), stdout=out)
    line = json.loads(out.getvalue())
    samples, rate = soundfile.read(tmp_path / "out.wav")
    assert line["version"] == 1 and line["seconds"] == pytest.approx(len(samples) / rate, abs=1e-3)
    with pytest.raises(CommandError, match="text is empty"):
        call_command("synthesize", "voice", " ", "-o", str(tmp_path / "none.wav"))
    assert not (tmp_path / "none.wav").exists()


def test_try_it_speaks_and_offers_the_download(voice, admin_client):
    assert admin_client.get("/models/").status_code == 200
    page = admin_client.get("/models/voice/")
    assert page.status_code == 200 and b'action="/models/voice/speak/"' in page.content
    response = admin_client.post("/models/voice/speak/", {"text": "The dog ran home.", "ref": ""},
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert b'<audio controls src="data:audio/wav;base64,' in response.content
    assert b'download="voice-v1.wav"' in response.content
    # Like the other tasks' Try it: the first answer says what loading the voice cost, apart from speaking.
    assert re.search(rb"\d+ ms \+ \d+ ms to load the model", response.content)
    again = admin_client.post("/models/voice/speak/", {"text": "The dog ran home.", "ref": ""},
                              headers={"HX-Request": "true"})
    assert b" ms to load the model" not in again.content
    assert re.search(r"sentence\s+· \d+ ms\s*</div>", again.content.decode())
    refused = admin_client.post("/models/voice/speak/", {"text": "word " * 450})
    assert refused.status_code == 422 and b"at most 2000 characters" in refused.content


def test_the_version_page_plays_held_out_samples_and_shows_the_alignment(voice, admin_client):
    page = admin_client.get("/models/voice/v1/")
    assert page.status_code == 200
    assert b'class="alignment-chart"' in page.content
    assert b'action="/models/voice/speak/"' in page.content and b'name="audio"' not in page.content
    sample = voice.metrics["samples"][0]
    assert f'/models/voice/v1/artifacts/{sample["synthesized"]}'.encode() in page.content
    download = admin_client.get(f'/models/voice/v1/artifacts/{sample["real"]}')
    assert download.status_code == 200 and b"".join(download.streaming_content)[:4] == b"RIFF"
    # No intelligibility figure is made up: the page says what its figures do not measure, and where it is measured.
    html = page.content.decode()
    assert "not whether a listener understands the words" in html and "bench/bench_synthesis.py" in html
    assert "CER" not in html and "WER" not in html


def test_the_api_downloads_a_sample_inside_its_folder(voice, api):
    sample = voice.metrics["samples"][0]["synthesized"]
    response = api.get(f"/api/models/voice/versions/1/artifacts/{sample}")
    assert response.status_code == 200 and response["X-Content-SHA256"] == voice.artifact(sample)["sha256"]
    assert api.get("/api/models/voice/versions/1/artifacts/samples/../config.json").status_code == 404
