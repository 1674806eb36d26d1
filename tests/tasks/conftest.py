"""Datasets for the task tests: scored tones for regression, a wake tone among other sounds for detection."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.audio import tone
from tests.factories import ClipFactory, DatasetFactory

# Small enough to train in a few seconds on two shared cores (mostly the export).
TINY = {"epochs": 3, "clip_seconds": 0.5, "batch_size": 4, "channels": 8, "early_stopping_patience": 0}


def post(client: Client, url: str, body: dict | None = None):
    return client.post(url, json.dumps(body or {}), content_type="application/json")


def score_tone(score: float, seconds: float = 0.5, seed: int = 0):
    """A tone whose pitch rises with the score, so the score is audible."""
    return tone(300.0 + 2000.0 * score, seconds, seed=seed)


def add_scored_clips(dataset, count: int, unscored: int = 0):
    clips = [ClipFactory(dataset=dataset, label="", score=round(i / (count - 1), 4), speaker=f"voice-{i % 4}",
                         samples=score_tone(i / (count - 1), seed=i), seconds=0.5)
             for i in range(count)]
    clips += [ClipFactory(dataset=dataset, label="", speaker="voice-0", frequency=700.0 + i, seconds=0.5)
              for i in range(unscored)]
    return clips


@pytest.fixture
def scored(db):
    """24 clips scored 0-1 (pitch follows the score) and 3 clips without a score."""
    dataset = DatasetFactory(name="ratings")
    add_scored_clips(dataset, 24, unscored=3)
    return dataset


@pytest.fixture
def create(api, django_capture_on_commit_callbacks):
    """POST /api/jobs with the tiny settings, running the enqueue that waits for the commit."""

    def create(dataset: str, task: str, model_name: str = "model", **overrides):
        payload = {"dataset": dataset, "model_name": model_name, "preset": "quick", "task": task,
                   "overrides": {**TINY, **overrides}}
        with django_capture_on_commit_callbacks(execute=True):
            return post(api, "/api/jobs", payload)

    return create


def centred(sound, seconds: float = 0.5, seed: int = 0):
    """``sound`` in the middle of a clip of quiet noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    wave = 0.02 * rng.standard_normal(int(seconds * 16000))
    offset = (len(wave) - len(sound)) // 2
    wave[offset : offset + len(sound)] += sound
    return wave.astype("float32")


def at_rate(samples, sample_rate: int):
    """16 kHz samples resampled to ``sample_rate`` (the rate of a dataset that is not at the model's)."""
    import torch
    import torchaudio.functional as AF

    if sample_rate == 16000:
        return samples
    return AF.resample(torch.from_numpy(samples), 16000, sample_rate).numpy()


def wakeword_dataset(name: str = "wakewords", sample_rate: int = 16000):
    """A wake sweep ("wake") among steady tones ("tone") and noise ("noise"), from four voices."""
    from tests.training_ml.conftest import other_sound, wake_sound

    dataset = DatasetFactory(name=name, sample_rate=sample_rate)
    for index in range(10):
        speaker = f"voice-{index % 4}"
        for label, sound in (("wake", wake_sound(seed=index)), ("tone", other_sound(index * 3)),
                             ("noise", other_sound(index * 3 + 2, seed=index))):
            ClipFactory(dataset=dataset, label=label, speaker=speaker,
                        samples=at_rate(centred(sound, seed=index), sample_rate))
    return dataset


@pytest.fixture
def wakewords(db):
    return wakeword_dataset()


def copy_artifacts(version, folder):
    """A registered version's artifacts copied out of the media storage (the job's own folder is cleaned up)."""
    from django.core.files.storage import default_storage

    folder.mkdir(parents=True, exist_ok=True)
    for entry in version.artifacts:
        with default_storage.open(entry["path"], "rb") as source:
            (folder / entry["name"]).write_bytes(source.read())
    return folder


def spoken_dataset():
    """A dataset "spoken" of 30 tone "sentences" with transcripts from five voices (a transcription task's data)."""
    from tests.training_ml.conftest import TONE_SENTENCES, sentence_transcript, tone_sentence

    dataset = DatasetFactory(name="spoken")
    for number in range(30):
        sentence = TONE_SENTENCES[number % len(TONE_SENTENCES)]
        speaker = number % 5
        wave = tone_sentence(sentence, 1 + 0.02 * (speaker - 2), seed=number)
        ClipFactory(dataset=dataset, label="", transcript=sentence_transcript(sentence), speaker=f"voice-{speaker}",
                    samples=wave, duration=len(wave) / 16000)
    return dataset


@pytest.fixture
def spoken(db):
    """spoken_dataset(), plus two clips without a transcript."""
    dataset = spoken_dataset()
    for index in range(2):
        ClipFactory(dataset=dataset, label="", speaker="voice-0", frequency=500.0 + index, seconds=0.5)
    return dataset
