"""A one-speaker voice corpus for the synthesis task: sentences spoken by one espeak-ng voice (no Django here).

The sentences are built from a small grammar (subject, verb, object, place, time) with a fixed seed, so a
corpus of a few hundred different sentences with a varied vocabulary needs no text files. Each clip is a
16-bit mono WAV at ``sample_rate`` with leading and trailing silence trimmed; ``manifest.csv`` has the columns
file, label, transcript, speaker (the label is "speech"), which the dataset import reads.
"""

from __future__ import annotations

import csv
import random
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile

from .demo_corpus import INSTALL_HINT, MANIFEST, DemoCorpusError, _synthesize, _trim_silence

DEFAULT_VOICE = "en-us"
SPEED = 160
PITCH = 50
LABEL = "speech"

_SUBJECTS = ("the old man", "my sister", "a small dog", "the teacher", "our neighbour", "the young pilot",
             "a tired farmer", "the doctor", "his brother", "the children", "a quiet girl", "the captain",
             "my friend", "the baker", "a clever student", "the driver")
_VERBS = ("found", "painted", "carried", "opened", "cleaned", "watched", "bought", "fixed", "dropped", "counted",
          "wanted", "borrowed", "moved", "described", "lost", "packed")
_OBJECTS = ("a red box", "the heavy door", "seven green apples", "an empty bottle", "the broken chair",
            "a bright lamp", "the silver key", "four blue cups", "a long letter", "the wooden boat",
            "a warm blanket", "the yellow kite", "three old maps", "a strange picture", "the kitchen window",
            "a basket of bread")
_PLACES = ("near the river", "in the garden", "at the station", "behind the house", "on the hill",
           "under the bridge", "in the market", "by the lake", "at the school", "in the small village")
_TIMES = ("this morning", "last night", "on Sunday", "after dinner", "before the storm", "in the spring",
          "at noon", "yesterday")
_QUESTIONS = ("Where did {s} put {o}?", "Why has {s} {v} {o}?", "Did {s} really see {o} {p}?")


def voice_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` different sentences (statements and some questions), the same for the same seed."""
    rng = random.Random(seed)
    sentences: list[str] = []
    seen: set[str] = set()
    while len(sentences) < count:
        subject, verb, obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        place, time = rng.choice(_PLACES), rng.choice(_TIMES)
        shape = rng.random()
        if shape < 0.15:
            text = rng.choice(_QUESTIONS).format(s=subject, v=verb, o=obj, p=place)
        elif shape < 0.5:
            text = f"{subject} {verb} {obj} {place}."
        elif shape < 0.8:
            text = f"{time.capitalize() if time[0].islower() else time}, {subject} {verb} {obj}."
        else:
            text = f"{subject} {verb} {obj} {place} {time}."
        text = text[0].upper() + text[1:]
        if text not in seen:
            seen.add(text)
            sentences.append(text)
    return sentences


def generate_voice_corpus(out_dir: Path, n_sentences: int = 300, voice: str = DEFAULT_VOICE, sample_rate: int = 16000,
                          seed: int = 0, speaker: str | None = None,
                          progress: Callable[[int, int], None] | None = None, workers: int = 2) -> list[dict]:
    """Write ``n_sentences`` clips of one speaker and ``manifest.csv``; rows {"path", "transcript", "speaker"}."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise DemoCorpusError(f"espeak-ng is not installed; install it with: {INSTALL_HINT}")
    if n_sentences < 1:
        raise DemoCorpusError(f"n_sentences must be at least 1, got {n_sentences}")
    out_dir = Path(out_dir)
    (out_dir / "wavs").mkdir(parents=True, exist_ok=True)
    speaker = speaker or voice
    sentences = voice_sentences(n_sentences, seed)
    done = 0

    def make(index: int) -> dict:
        audio = _trim_silence(_synthesize(espeak, sentences[index], voice, SPEED, PITCH, sample_rate), sample_rate)
        audio = audio / max(float(np.abs(audio).max()), 1e-6) * 0.8
        path = out_dir / "wavs" / f"sentence_{index:04d}.wav"
        soundfile.write(path, audio.astype(np.float32), sample_rate, subtype="PCM_16")
        return {"path": path, "transcript": sentences[index], "speaker": speaker}

    rows = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for row in pool.map(make, range(n_sentences)):
            rows.append(row)
            done += 1
            if progress is not None:
                progress(done, n_sentences)
    with open(out_dir / MANIFEST, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "transcript", "speaker"])
        for row in rows:
            writer.writerow([row["path"].relative_to(out_dir).as_posix(), LABEL, row["transcript"], row["speaker"]])
    return rows
