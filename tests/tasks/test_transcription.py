"""Transcription end to end: jobs on transcripts, the worker, the registered version, text predictions."""

from __future__ import annotations

import json
from io import StringIO

import pytest
import torch
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django_q.models import OrmQ

from datasets_app.models import Clip
from registry_app.models import ModelVersion
from tests.audio import wav_bytes, write_wav
from tests.factories import ClipFactory, DatasetFactory
from tests.training_ml.conftest import tone_sentence
from training_app import tasks
from training_app.models import TrainingJob
from registry_app.models import PredictionLog


@pytest.fixture
def trained(spoken, create):
    """A transcription job trained by the worker code path and registered as version 1 of "speech"."""
    response = create("spoken", "transcription", model_name="speech", epochs=12, batch_size=4, learning_rate=0.01)
    assert response.status_code == 201, response.content
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert tasks.run_training_job(job.pk) == "succeeded", job.error
    job.refresh_from_db()
    return job


def upload(name: str, sentence: str = "abc"):
    return SimpleUploadedFile(name, wav_bytes(tone_sentence(sentence)), content_type="audio/wav")


def test_transcription_job_freezes_transcripts_and_counts_clips_without_one(spoken, create):
    response = create("spoken", "transcription")

    assert response.status_code == 201, response.content
    body = response.json()
    job = TrainingJob.objects.get()
    assert job.task == "transcription" and body["snapshot_clips"] == 30 and body["data"]["ignored_clips"] == 2
    assert {entry["transcript"] for entry in job.snapshot} >= {"Ab.", "B a c."}
    assert job.config["text_case"] == "lower" and job.config["noise"] is False
    Clip.objects.filter(pk=job.snapshot[0]["id"]).update(transcript="changed")
    job.refresh_from_db()
    assert job.snapshot[0]["transcript"] != "changed"


def test_bad_transcripts_are_422_per_clip_and_queue_nothing(db, create):
    dataset = DatasetFactory(name="bad")
    for number in range(20):
        wave = tone_sentence("ab", seed=number)
        ClipFactory(dataset=dataset, label="", transcript="Ab.", speaker=f"v{number % 3}", samples=wave,
                    duration=len(wave) / 16000)
    blank = ClipFactory(dataset=dataset, label="", transcript="   ", speaker="v0", seconds=0.5)
    dots = ClipFactory(dataset=dataset, label="", transcript="...!", speaker="v0", seconds=0.5)
    long = ClipFactory(dataset=dataset, label="", transcript="a" * 30, speaker="v1", seconds=0.5)

    response = create("bad", "transcription")

    assert response.status_code == 422
    problems = response.json()["problems"]
    assert f"clip {blank.pk}: its transcript is only whitespace" in problems
    assert any(problem.startswith(f"clip {dots.pk}: its transcript ('...!') is empty after normalisation")
               for problem in problems)
    assert any(problem.startswith(f"clip {long.pk}: its transcript has 30 characters (needing 59 CTC frames) "
                                  "but its 0.50 s of audio give only 26") for problem in problems)
    assert len(problems) == 3
    assert TrainingJob.objects.count() == 0 and OrmQ.objects.count() == 0


def test_too_few_transcripts_and_a_bad_setting_are_422(db, create):
    dataset = DatasetFactory(name="few")
    for number in range(5):
        ClipFactory(dataset=dataset, label="", transcript="ab", speaker="v0", seconds=1.0)

    response = create("few", "transcription")
    assert response.status_code == 422
    assert response.json()["problems"] == ["transcription needs at least 20 clips with a transcript; 5 have one"]

    response = create("few", "transcription", text_case="upper")
    assert response.status_code == 422 and response.json()["field"] == "text_case"


def test_worker_trains_a_transcriber_with_its_vocabulary_metrics_export_predictions_and_pages(
    trained, api, admin_client, tmp_path
):
    metrics = trained.metrics
    assert metrics["vocabulary"] == [" ", "a", "b", "c"]
    assert metrics["normalization"]["case"] == "lower" and "lower-cased" in metrics["normalization"]["description"]
    assert metrics["out_of_vocabulary"] == {"characters": {}, "clips": []}
    # Twelve epochs learn to spell the tone "letters" of voices the model never heard.
    assert metrics["cer"] < metrics["reference"]["cer"] and metrics["cer"] < 0.5
    assert metrics["reference"]["text"] in {"ab", "ba", "abc", "cab", "a c", "bc a", "cc", "b a c", "aab", "ca"}
    decoders = metrics["decoders"]
    # The word list is every word of the training transcripts.
    assert decoders["words"] == len(metrics["lexicon"]) >= 5
    assert set(metrics["lexicon"]) <= {"a", "aab", "ab", "abc", "b", "ba", "bc", "c", "ca", "cab", "cc"}
    assert decoders["chosen"] == ("lexicon_beam" if decoders["lexicon_beam"]["val"]["wer"] < decoders["greedy"]["val"]["wer"]
                                  else "greedy")
    assert metrics[metrics["evaluated_on"]] == decoders[decoders["chosen"]][metrics["evaluated_on"]]
    clips = metrics["clips"]
    assert len(clips) == metrics[metrics["evaluated_on"]]["clips"] > 0
    assert [row["cer"] for row in clips] == sorted((row["cer"] for row in clips), reverse=True)
    assert {"reference", "hypothesis", "speaker", "wer"} <= set(clips[0])
    assert [{"val_cer", "val_wer", "val_loss"} <= set(epoch) for epoch in trained.epochs] == [True] * 12
    assert metrics["timings"]["evaluating_seconds"] > 0 and list(metrics["timings"])[-1] == "evaluating_seconds"

    version = ModelVersion.objects.get(job=trained)
    assert version.model.task == "transcription" and version.labels == []
    prediction = version.metrics["prediction"]
    assert prediction["vocabulary"] == metrics["vocabulary"] and prediction["normalization"]["numbers"] == "as_written"
    config = json.loads(default_storage.open(version.artifact("config.json")["path"]).read())
    assert config["vocabulary"] == [" ", "a", "b", "c"] and config["output"]["name"] == "log_probs"
    assert {"model.pt2", "model.onnx", "config.json"} <= {entry["name"] for entry in version.artifacts}

    # The exported program reproduces the trained network (weights.pt) on audio of a length it never saw.
    program = torch.export.load(default_storage.open(version.artifact("model.pt2")["path"])).module()
    _exported_equals_trained(program, version, config)
    _predictions_answer_with_text(api, tmp_path)
    _pages_show_error_rates_clip_table_and_try_it_text(trained, admin_client)
    _judges_the_intelligibility_of_speech(version, tmp_path)


def _exported_equals_trained(program, version, config):
    from training_app.ml.features import LogMelFrontend
    from training_app.ml.config import FeatureConfig
    from training_app.ml.model import ExportedTranscriber, SpeechCTC

    features = FeatureConfig(**{k: v for k, v in config["features"].items() if k != "cache_key"})
    architecture = config["model"]
    network = SpeechCTC(len(config["vocabulary"]) + 1, features.n_mels, architecture["channels"],
                        architecture["width"], architecture["blocks"], architecture["kernel"], architecture["dropout"])
    eager = ExportedTranscriber(LogMelFrontend(features), network)
    eager.load_state_dict(torch.load(default_storage.open(version.artifact("weights.pt")["path"]), weights_only=True))
    eager.eval()
    wave = torch.from_numpy(tone_sentence("b a c", seed=99)[: 160 * 111]).unsqueeze(0)
    with torch.no_grad():
        assert torch.allclose(program(wave), eager(wave), atol=1e-4)


def _judges_the_intelligibility_of_speech(version, tmp_path):
    """A transcription version is the judge of a voice's held-out sentences (training_app/ml/tts/judge.py): speech
    it can read scores a lower error rate than a rendering that says nothing."""
    import numpy as np

    from training_app.ml.tts.judge import Judge, judge_voice

    folder = tmp_path / "judge"
    folder.mkdir()
    for name in ("model.pt2", "config.json"):
        (folder / name).write_bytes(default_storage.open(version.artifact(name)["path"]).read())
    judge = Judge.load(folder, "speech:v1")
    sentences = ["cab", "b a c", "abc"]
    real = [tone_sentence(sentence, seed=200 + i) for i, sentence in enumerate(sentences)]
    silent = [np.zeros_like(wave) for wave in real]
    scores = judge_voice(judge, [s.upper() + "." for s in sentences],
                         {"real": real, "synthesized": silent}, 16000)
    assert scores["judge"] == "speech:v1" and scores["sentences"] == 3
    assert scores["synthesized"] == {"cer": 1.0, "wer": 1.0}
    assert scores["real"]["cer"] < 0.5 and scores["real"]["cer"] < scores["synthesized"]["cer"]
    assert [row["text"] for row in scores["transcripts"]] == ["CAB.", "B A C.", "ABC."]
    assert all(row["synthesized"] == "" for row in scores["transcripts"])


def _predictions_answer_with_text(api, tmp_path):
    response = api.post("/api/models/speech/predict", {"files": [upload("a.wav", "cab")]})

    assert response.status_code == 200, response.content
    result = response.json()["results"][0]
    assert result["text"] and set(result["text"]) <= set(" abc")
    assert result["segments"] == [{"start": 0.0, "end": pytest.approx(result["duration"], abs=1e-3),
                                   "text": result["text"]}]
    chosen = ModelVersion.objects.get(model__name="speech").metrics["prediction"]["decoding"]
    assert result["windows"] == 1 and result["decoding"] == chosen in ("greedy", "lexicon_beam")
    assert all(word["start"] <= word["end"] <= result["duration"] + 0.05 for word in result["words"])
    assert " ".join(word["word"] for word in result["words"]) == result["text"]
    assert "label" not in result and "score" not in result
    assert PredictionLog.objects.get(pk=result["prediction_id"]).answer == result["text"]

    out = StringIO()
    call_command("predict", "speech", str(write_wav(tmp_path / "cli.wav", tone_sentence("ab"))), stdout=out)
    line = json.loads(out.getvalue())
    assert line["file"] == "cli.wav" and isinstance(line["text"], str) and line["model"] == "speech"


def test_panel_form_and_command_choose_transcription_and_its_normalisation(spoken, admin_client):
    response = admin_client.post("/training/new/", {"dataset": "spoken", "model_name": "from-panel",
                                                    "task": "transcription", "preset": "quick", "numbers": "words",
                                                    "text_case": "", "spec_augment": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = TrainingJob.objects.get(model_name="from-panel")
    assert job.task == "transcription" and job.config["numbers"] == "words" and job.config["text_case"] == "lower"

    call_command("train", "spoken", "--model", "from-cli", "--preset", "quick", "--set", "task=transcription",
                 "--set", "punctuation=keep", stdout=StringIO(), stderr=StringIO())
    job = TrainingJob.objects.get(model_name="from-cli")
    assert job.task == "transcription" and job.config["punctuation"] == "keep" and job.snapshot_size == 30

    summary = admin_client.get("/training/new/summary/", {"dataset": "spoken", "task": "transcription",
                                                          "preset": "quick"}, headers={"HX-Request": "true"})
    assert summary.status_code == 200 and "2 active clips without" in summary.content.decode()


def _pages_show_error_rates_clip_table_and_try_it_text(trained, admin_client):
    job_page = admin_client.get(f"/training/jobs/{trained.pk}/").content.decode()
    assert "Character error rate" in job_page and "Most frequent transcript" in job_page
    words = trained.metrics["decoders"]["words"]
    assert "Network, greedy decoding" in job_page and f"beam search over the {words} training words" in job_page
    assert "validation CER" in job_page and "validation WER" in job_page
    assert 'class="table transcripts"' in job_page and "<audio" in job_page
    version_page = admin_client.get("/models/speech/v1/").content.decode()
    assert "Character error rate" in version_page and "Vocabulary" in version_page

    response = admin_client.post("/models/speech/try/", {"audio": upload("try.wav", "ab")},
                                 headers={"HX-Request": "true"})

    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="transcript-result"' in html
    jobs = admin_client.get("/training/").content.decode()
    assert "transcription" in jobs and "CER" in jobs
    model_page = admin_client.get("/models/speech/")
    assert model_page.status_code == 200 and "CER" in model_page.content.decode()
