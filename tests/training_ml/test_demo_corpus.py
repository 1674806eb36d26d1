from __future__ import annotations

import csv
import shutil

import pytest
import soundfile

from training_app.demo_corpus import NOISE_LABEL, DemoCorpusError, available_voices, generate_demo_corpus

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@needs_espeak
def test_demo_corpus_has_every_word_per_voice_and_a_noise_class(tmp_path):
    updates = []
    rows = generate_demo_corpus(tmp_path / "demo", words=("yes", "no"), n_voices=3, seed=1,
                                progress=lambda done, total: updates.append((done, total)))

    assert len(rows) == 2 * 3 + 3
    assert {row["label"] for row in rows} == {"yes", "no", NOISE_LABEL}
    speakers = {row["speaker"] for row in rows if row["label"] != NOISE_LABEL}
    assert speakers == {voice.speaker for voice in available_voices(1)[:3]}
    assert all(row["speaker"] == "" for row in rows if row["label"] == NOISE_LABEL)
    assert updates[-1] == (9, 9)
    for row in rows:
        info = soundfile.info(row["path"])
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
        data, _ = soundfile.read(row["path"])
        assert abs(data).max() > 0.01

    with open(tmp_path / "demo" / "manifest.csv", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    assert [(m["file"], m["label"], m["speaker"]) for m in manifest] == [
        (row["path"].relative_to(tmp_path / "demo").as_posix(), row["label"], row["speaker"]) for row in rows
    ]


@needs_espeak
def test_demo_corpus_is_reproducible_for_a_seed(tmp_path):
    first = generate_demo_corpus(tmp_path / "a", words=("go",), n_voices=2, n_noise_clips=1, seed=3)
    second = generate_demo_corpus(tmp_path / "b", words=("go",), n_voices=2, n_noise_clips=1, seed=3)

    for a, b in zip(first, second, strict=True):
        assert a["path"].read_bytes() == b["path"].read_bytes()


def test_voices_are_distinct_speakers():
    voices = available_voices()

    assert len({voice.speaker for voice in voices}) == len(voices) >= 60


def test_missing_espeak_is_explained_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(DemoCorpusError, match="apt-get install -y espeak-ng sox"):
        generate_demo_corpus(tmp_path / "demo")
