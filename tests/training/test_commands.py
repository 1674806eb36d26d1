"""manage.py train and make_demo_dataset."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django_q.models import OrmQ

from datasets_app.models import Dataset
from tests.training.conftest import TINY
from training_app.demo_corpus import HARD_WORDS, hard_holdout_voices
from training_app.models import TrainingJob

TINY_ARGS = [f"--set={key}={value}" for key, value in TINY.items()]


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_train_enqueues_and_prints_the_job_id(tones, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        out, err = run("train", "tones", "--model", "cli-model", "--preset", "quick", "--set", "seed=4",
                       "--set", "noise=off")
    job = TrainingJob.objects.get()
    assert out.strip() == str(job.pk)
    assert job.overrides == {"seed": 4, "noise": False}
    assert job.status == "queued" and job.preset == "quick"
    assert OrmQ.objects.get().task_id() == TrainingJob.objects.get().task_id
    assert f"Job #{job.pk}: cli-model on tones, 12 clips" in err


def test_train_now_trains_in_this_process_and_prints_metrics(tones):
    out, err = run("train", "tones", "--model", "cli-model", "--preset", "quick", "--now", *TINY_ARGS)
    job = TrainingJob.objects.get()
    first_line, metrics_json = out.split("\n", 1)
    assert first_line == str(job.pk)
    result = json.loads(metrics_json)
    assert result["job"] == job.pk and result["status"] == "succeeded"
    assert result["metrics"]["accuracy"] == job.metrics["accuracy"]
    assert result["version"] == job.model_version.version == 1
    assert OrmQ.objects.count() == 0  # never handed to a worker
    assert job.status == "succeeded"
    assert "Training" in err and "100%" in err


def test_train_now_exits_non_zero_when_the_job_fails(tones):
    from django.core.files.storage import default_storage

    for clip in tones.clips.filter(label="low"):
        default_storage.delete(clip.audio.name)
    with pytest.raises(CommandError) as caught:
        run("train", "tones", "--model", "cli-model", "--preset", "quick", "--now", *TINY_ARGS)
    assert caught.value.returncode == 1
    assert "failed: 6 of the 12 clips" in str(caught.value)
    assert TrainingJob.objects.get().status == "failed"


def test_train_wait_follows_a_job_until_it_ends(tones, django_capture_on_commit_callbacks, monkeypatch):
    """--wait, with the job cancelled by someone else while it waits in the queue: exit code 3."""
    from training_app.management.commands import train as train_command

    def someone_cancels(seconds):
        for job in TrainingJob.objects.filter(status="queued"):
            job.cancel()

    monkeypatch.setattr(train_command.time, "sleep", someone_cancels)
    with pytest.raises(CommandError) as caught, django_capture_on_commit_callbacks(execute=True):
        run("train", "tones", "--model", "cli-model", "--preset", "quick", "--wait", *TINY_ARGS)
    assert caught.value.returncode == 3
    assert "was cancelled" in str(caught.value)
    assert TrainingJob.objects.get().status == "cancelled"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "--model", "m"], "No dataset named 'nope'."),
        (["tones", "--model", "m", "--set", "epochs=lots"], "--set epochs=lots: must be a whole number"),
        (["tones", "--model", "m", "--set", "wings=2"], "unknown setting 'wings'"),
        (["tones", "--model", "m", "--set", "epochs"], "use KEY=VALUE"),
        (["tones", "--model", "m", "--set", "epochs=0"], "epochs: must be at least 1 and at most 1000, got 0"),
        (["tones", "--model", "Bad Name"], "model_name: Use 1-63 lower-case letters"),
    ],
)
def test_train_explains_bad_arguments(tones, args, message):
    with pytest.raises(CommandError) as caught:
        run("train", *args)
    assert message in str(caught.value)
    assert TrainingJob.objects.count() == 0


def test_train_explains_untrainable_data(tones):
    for clip in list(tones.clips.filter(label="low"))[:3]:
        clip.delete()
    with pytest.raises(CommandError) as caught:
        run("train", "tones", "--model", "m")
    assert "label 'low' has 3 clips, at least 5 are needed" in str(caught.value)


def test_make_demo_dataset_imports_a_labelled_corpus_with_speakers(db):
    out, err = run("make_demo_dataset", "--name", "demo", "--voices", "2", "--words", "yes,no", "--seed", "3")
    dataset = Dataset.objects.get(name="demo")
    counts = {label: dataset.clips.filter(label=label).count() for label in ("yes", "no", "noise")}
    assert counts == {"yes": 2, "no": 2, "noise": 2}
    assert dataset.clips.exclude(speaker="").values("speaker").distinct().count() == 2
    assert "Dataset 'demo': 6 clips imported; now 6 clips, 3 labels, 2 speakers." in out
    assert "Synthesising" in err and "Importing" in err
    again, _ = run("make_demo_dataset", "--name", "demo", "--voices", "2", "--words", "yes,no", "--seed", "3")
    assert "0 clips imported, 6 already there" in again
    assert dataset.clips.count() == 6


def test_make_demo_dataset_without_espeak_says_how_to_install_it(db, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CommandError) as caught:
        run("make_demo_dataset", "--name", "demo", "--voices", "2")
    assert "espeak-ng is not installed; install it with: apt-get install -y espeak-ng sox" in str(caught.value)
    assert not Dataset.objects.filter(name="demo").exists()


def test_make_demo_dataset_scores_kind_scores_every_clip(db):
    out, _ = run("make_demo_dataset", "--kind", "scores", "--voices", "2", "--words", "yes,no", "--seed", "3")

    dataset = Dataset.objects.get(name="speech-quality-demo")
    clips = list(dataset.clips.all())
    assert len(clips) == 4
    assert all(clip.score is not None and 0.0 <= clip.score <= 1.0 for clip in clips)
    assert {clip.transcript for clip in clips} == {"yes", "no"}
    assert len({clip.speaker for clip in clips}) == 2
    assert "--set task=regression" in out


def test_make_demo_dataset_wakeword_kind_imports_clips_and_background_recordings(db):
    args = ("make_demo_dataset", "--kind", "wakeword", "--voices", "2", "--takes", "1", "--backgrounds", "1",
            "--background-minutes", "0.1", "--seed", "3")
    out, _ = run(*args)

    dataset = Dataset.objects.get(name="wake-word-demo")
    assert dataset.label_counts() == {"other": 8, "confusable": 4, "hey_marlo": 2, "noise": 2}
    background = dataset.clips.get(kind="background")
    assert background.duration == 6.0 and background.label == ""
    assert set(dataset.clips.filter(label="hey_marlo").values_list("transcript", flat=True)) == {"hey marlo"}
    assert "now 16 clips, 4 labels, 2 speakers, 1 background recording (0.1 min)." in out
    assert "--set positive_label=hey_marlo" in out
    again, _ = run(*args)
    assert "0 clips imported, 17 already there" in again


def test_make_demo_dataset_phrases_kind_imports_transcribed_phrases_from_each_voice(db):
    out, _ = run("make_demo_dataset", "--kind", "commands", "--voices", "2", "--phrases", "3", "--seed", "3")

    dataset = Dataset.objects.get(name="spoken-commands-demo")
    clips = list(dataset.clips.all())
    assert len(clips) == 6 and all(clip.transcript and clip.label for clip in clips)
    assert len({clip.speaker for clip in clips}) == 2
    assert all(clip.duration > 0.5 for clip in clips)
    assert "--set task=transcription" in out


def test_make_demo_dataset_hard_kind_names_the_test_voices_to_hold_out(db):
    out, _ = run("make_demo_dataset", "--kind", "hard", "--voices", "3", "--holdout", "1", "--takes", "1",
                 "--seed", "3")

    dataset = Dataset.objects.get(name="hard-keywords-demo")
    held = hard_holdout_voices(3, 1, seed=3)
    assert dataset.clips.count() == 3 * (len(HARD_WORDS) + 1) + 3
    assert dataset.clips.filter(label="unknown").count() == 3
    assert dataset.clips.filter(label="bottle", transcript="bottle").count() == 3
    assert held[0] in dataset.description
    assert f"--set holdout_speakers={held[0]}" in out


def test_make_demo_dataset_says_when_the_corpus_is_too_small_to_train(db):
    out, _ = run("make_demo_dataset", "--name", "tiny", "--voices", "2", "--words", "yes,no", "--seed", "3")
    assert "Too small to train yet: label 'no' has 2 clips, at least 5 are needed" in out
    assert "Make it again with more --voices" in out
    assert "Then train it: python manage.py train tiny --model commands --wait" in out
    assert "\nTrain it:" not in out
