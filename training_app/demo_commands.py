"""A spoken-commands demo corpus for transcription: command phrases with transcripts, many espeak-ng voices.

Phrases come from a small grammar (about 70 words: lights, timers, music, doors, heating...), so a model
trained on some voices can be tested on voices it never heard. Each voice speaks ``phrases_per_voice``
phrases drawn at random (every voice a different set), at its own speed and pitch with a little per-take
variation, with 0.1-0.3 s of background noise before and after at 15-35 dB SNR. The label is the command's
intent ("lights", "timer"...), the transcript the phrase as spoken. No Django here.
"""

from __future__ import annotations

import csv
import itertools
import random
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile

from .demo_corpus import INSTALL_HINT, MANIFEST, NOISE_KINDS, DemoCorpusError, _slug, _synthesize, _trim_silence, available_voices, noise

ROOMS = ("", "kitchen", "bedroom", "living room", "bathroom", "hall", "office", "garage")
NUMBERS = ("one", "two", "three", "five", "ten", "fifteen", "twenty", "thirty")
DEVICES = ("lights", "lamp", "fan", "heater", "radio", "television")
SONGS = ("some music", "the news", "the radio", "my playlist", "some jazz", "the next song")


def _with_room(phrase: str, room: str) -> str:
    return f"{phrase} in the {room}" if room else phrase


def command_phrases() -> list[tuple[str, str]]:
    """Every (intent, phrase) of the grammar."""
    phrases: list[tuple[str, str]] = []
    for device, room, state in itertools.product(DEVICES, ROOMS, ("on", "off")):
        phrases.append(("lights" if device in ("lights", "lamp") else "devices",
                        _with_room(f"turn {state} the {device}", room)))
        phrases.append(("lights" if device in ("lights", "lamp") else "devices",
                        _with_room(f"switch the {device} {state}", room)))
    for number, unit in itertools.product(NUMBERS, ("minutes", "seconds", "hours")):
        phrases.append(("timer", f"set a timer for {number} {unit}"))
    for number in NUMBERS:
        phrases.append(("volume", f"set the volume to {number}"))
        phrases.append(("heating", f"set the heating to {number} degrees"))
    for song in SONGS:
        phrases.append(("music", f"play {song}"))
    for room, action in itertools.product(("front", "back", "garage"), ("open", "close", "lock")):
        phrases.append(("doors", f"{action} the {room} door"))
    phrases += [("music", "stop the music"), ("music", "pause"), ("volume", "louder please"),
                ("volume", "quieter please"), ("question", "what time is it"), ("question", "what is the weather"),
                ("question", "what is on my calendar today"), ("timer", "cancel the timer"), ("stop", "stop"),
                ("stop", "never mind")]
    return phrases


def generate_command_corpus(
    out_dir: Path,
    n_voices: int = 20,
    phrases_per_voice: int = 30,
    sample_rate: int = 16000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 2,
) -> list[dict]:
    """Write mono 16-bit WAV utterances under ``out_dir`` plus ``manifest.csv`` (file,label,transcript,speaker)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise DemoCorpusError(f"espeak-ng is not installed; install it with: {INSTALL_HINT}")
    voices = available_voices(seed)
    if not 1 <= n_voices <= len(voices):
        raise DemoCorpusError(f"n_voices must be between 1 and {len(voices)}, got {n_voices}")
    if phrases_per_voice < 1:
        raise DemoCorpusError(f"phrases_per_voice must be at least 1, got {phrases_per_voice}")
    grammar = command_phrases()
    rng = random.Random(seed)
    jobs = [(voice, *phrase) for voice in voices[:n_voices]
            for phrase in rng.sample(grammar, min(phrases_per_voice, len(grammar)))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def make(position: int) -> dict:
        voice, intent, phrase = jobs[position]
        generator = np.random.default_rng([seed, position])
        speed = int(voice.speed + generator.integers(-12, 13))
        pitch = int(np.clip(voice.pitch + generator.integers(-8, 9), 0, 99))
        speech = _trim_silence(_synthesize(espeak, phrase, voice.voice, speed, pitch, sample_rate), sample_rate)
        speech = speech / max(float(np.abs(speech).max()), 1e-6) * generator.uniform(0.3, 0.9)
        before, after = (int(generator.uniform(0.1, 0.3) * sample_rate) for _ in range(2))
        clip = np.concatenate([np.zeros(before), speech, np.zeros(after)])
        speech_rms = float(np.sqrt(np.mean(speech**2)))
        kind = NOISE_KINDS[int(generator.integers(len(NOISE_KINDS)))]
        clip += noise(kind, len(clip), sample_rate, generator) * speech_rms / 10 ** (generator.uniform(15, 35) / 20)
        path = out_dir / intent / f"{_slug(phrase)}_{_slug(voice.speaker)}_{position}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, np.clip(clip, -1.0, 1.0).astype(np.float32), sample_rate, subtype="PCM_16")
        return {"path": path, "label": intent, "transcript": phrase, "speaker": voice.speaker}

    rows: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, row in enumerate(pool.map(make, range(len(jobs))), start=1):
            rows.append(row)
            if progress is not None:
                progress(done, len(jobs))
    with open(out_dir / MANIFEST, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "transcript", "speaker"])
        for row in rows:
            writer.writerow([row["path"].relative_to(out_dir).as_posix(), row["label"], row["transcript"],
                             row["speaker"]])
    return rows
