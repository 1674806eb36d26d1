from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import soundfile

from training_app.demo_corpus import (
    CONFUSABLE_LABEL,
    CONFUSABLE_PHRASES,
    HARD_SNR_RANGE_DB,
    HARD_WORDS,
    NOISE_LABEL,
    OTHER_LABEL,
    UNKNOWN_LABEL,
    UNKNOWN_TEST_WORDS,
    UNKNOWN_TRAIN_WORDS,
    WAKE_LABEL,
    WAKE_PHRASE,
    WAKEWORD_CLIP_SECONDS,
    DemoCorpusError,
    available_voices,
    generate_demo_corpus,
    generate_hard_corpus,
    generate_scores_corpus,
    generate_wakeword_corpus,
    hard_holdout_voices,
    read_background_listing,
    snr_to_score,
)

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


def _noise_floor_db(path) -> float:
    """How far the loudest 10 ms frames stand above the quietest: high for clean speech, low in heavy noise."""
    data, rate = soundfile.read(path)
    frames = data[: len(data) // 160 * 160].reshape(-1, 160)
    energy = (frames**2).mean(axis=1)
    return float(10 * np.log10(np.percentile(energy, 95) / np.percentile(energy, 10)))


@needs_espeak
def test_scores_corpus_scores_each_clip_by_how_clean_it_sounds(tmp_path):
    rows = generate_scores_corpus(tmp_path / "scores", words=("yes", "left"), n_voices=5, seed=2)

    assert len(rows) == 10
    assert all(row["score"] == snr_to_score(row["snr_db"]) for row in rows)
    assert [snr_to_score(db) for db in (-5.0, 10.0, 25.0, 40.0)] == [0.0, 0.5, 1.0, 1.0]
    scores = np.array([row["score"] for row in rows])
    assert scores.min() < 0.3 and scores.max() > 0.7
    floors = np.array([_noise_floor_db(row["path"]) for row in rows])
    rank = lambda values: np.argsort(np.argsort(values))  # noqa: E731
    assert np.corrcoef(rank(scores), rank(floors))[0, 1] > 0.6  # the score is what a listener hears
    with open(tmp_path / "scores" / "manifest.csv", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    assert list(manifest[0]) == ["file", "label", "transcript", "score", "speaker"]
    assert [float(m["score"]) for m in manifest] == list(scores)
    assert {m["transcript"] for m in manifest} == {"yes", "left"}


@needs_espeak
def test_wakeword_corpus_has_the_phrase_confusables_other_words_noise_and_a_background(tmp_path):
    rows = generate_wakeword_corpus(tmp_path / "wake", n_voices=2, positive_takes=2, confusable_takes=1,
                                    other_takes=1, n_noise_clips=1, n_backgrounds=1, background_minutes=0.2, seed=1)

    by_label = {}
    for row in rows:
        by_label.setdefault((row["label"], row["kind"]), []).append(row)
    assert {key: len(value) for key, value in by_label.items()} == {
        (WAKE_LABEL, "clip"): 4, (CONFUSABLE_LABEL, "clip"): 2, (OTHER_LABEL, "clip"): 2, (NOISE_LABEL, "clip"): 1,
        ("", "background"): 1,
    }
    assert {row["transcript"] for row in by_label[WAKE_LABEL, "clip"]} == {WAKE_PHRASE}
    assert all(row["transcript"] in CONFUSABLE_PHRASES for row in by_label[CONFUSABLE_LABEL, "clip"])
    assert len({row["speaker"] for row in rows if row["kind"] == "clip" and row["speaker"]}) == 2
    for row in rows:
        info = soundfile.info(row["path"])
        expected = 12.0 if row["kind"] == "background" else WAKEWORD_CLIP_SECONDS
        assert (info.samplerate, info.channels) == (16000, 1)
        assert info.frames == int(expected * 16000)
    background, _ = soundfile.read(by_label["", "background"][0]["path"])
    assert np.abs(background).max() > 0.05  # speech, not only room noise
    with open(tmp_path / "wake" / "manifest.csv", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    assert list(manifest[0]) == ["file", "label", "transcript", "speaker", "kind"]
    assert [m["file"] for m in manifest if m["kind"] == "background"] == ["background/background_01.wav"]
    # Beside the recording, what it says and when: sentences in order, inside the recording, loud where listed.
    recording = by_label["", "background"][0]["path"]
    assert (recording.parent / "background_01.tsv").exists()
    sentences = read_background_listing(recording)
    assert sentences and list(sentences[0]) == ["start", "end", "text", "confusable"]
    assert all(0.0 <= a["start"] < a["end"] <= b["start"] for a, b in zip(sentences, sentences[1:]))
    assert sentences[-1]["end"] <= 12.0
    assert all(s["confusable"] in s["text"] for s in sentences if s["confusable"])
    assert all(s["confusable"] in ("", *CONFUSABLE_PHRASES) for s in sentences)
    rate = 16000
    for sentence in sentences:
        spoken = background[int(sentence["start"] * rate) : int(sentence["end"] * rate)]
        assert np.abs(spoken).max() > 0.05
    pauses = [background[int(a["end"] * rate) + 80 : int(b["start"] * rate) - 80] for a, b in zip(sentences, sentences[1:])]
    assert all(np.abs(pause).max() < 0.1 for pause in pauses if len(pause))  # room noise only
    assert read_background_listing(tmp_path / "elsewhere.wav") is None


@needs_espeak
def test_more_confusable_takes_add_clips_and_keep_the_default_corpus_unchanged(tmp_path):
    common = {"n_voices": 2, "positive_takes": 1, "other_takes": 1, "n_noise_clips": 1, "n_backgrounds": 1,
              "background_minutes": 0.05, "seed": 4}
    default = generate_wakeword_corpus(tmp_path / "two", **common)
    more = generate_wakeword_corpus(tmp_path / "five", confusable_takes=5, **common)

    default_files = {row["path"].relative_to(tmp_path / "two") for row in default}
    more_files = {row["path"].relative_to(tmp_path / "five") for row in more}
    assert default_files < more_files and len(more_files - default_files) == 2 * 3
    for name in default_files:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "five" / name).read_bytes()
    for speaker in {row["speaker"] for row in more if row["speaker"]}:
        said = [row["transcript"] for row in more if row["speaker"] == speaker and row["label"] == CONFUSABLE_LABEL]
        assert len(said) == len(set(said)) == 5


def test_wakeword_corpus_refuses_impossible_counts(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    with pytest.raises(DemoCorpusError, match="at least once"):
        generate_wakeword_corpus(tmp_path / "wake", positive_takes=0)
    with pytest.raises(DemoCorpusError, match="at most"):
        generate_wakeword_corpus(tmp_path / "wake", confusable_takes=len(CONFUSABLE_PHRASES) + 1)


@needs_espeak
def test_hard_corpus_has_confusable_pairs_noise_and_unknown_words_the_test_voices_alone_say(tmp_path):
    rows = generate_hard_corpus(tmp_path / "hard", n_voices=4, n_holdout=2, unknown_takes=2, seed=2)

    held = set(hard_holdout_voices(4, 2, seed=2))
    assert held == {voice.speaker for voice in available_voices(2)[2:4]}
    assert {row["label"] for row in rows} == {*HARD_WORDS, UNKNOWN_LABEL, NOISE_LABEL}
    assert len(rows) == 4 * (len(HARD_WORDS) + 2) + 4
    unknown = [row for row in rows if row["label"] == UNKNOWN_LABEL]
    heard_in_training = {row["transcript"] for row in unknown if row["speaker"] not in held}
    heard_in_test = {row["transcript"] for row in unknown if row["speaker"] in held}
    assert heard_in_training <= set(UNKNOWN_TRAIN_WORDS) and heard_in_test <= set(UNKNOWN_TEST_WORDS)
    assert not heard_in_training & heard_in_test and len(heard_in_test) >= 2
    assert all(HARD_SNR_RANGE_DB[0] <= row["snr_db"] <= HARD_SNR_RANGE_DB[1] for row in rows if "snr_db" in row)
    with open(tmp_path / "hard" / "manifest.csv", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    assert {(m["label"], m["transcript"]) for m in manifest if m["label"] == "bottle"} == {("bottle", "bottle")}
    with pytest.raises(DemoCorpusError):
        generate_hard_corpus(tmp_path / "bad", n_voices=2, n_holdout=2)
