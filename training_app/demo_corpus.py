"""A speech-commands-style demo corpus spoken by synthetic espeak-ng voices (no Django here).

Each voice says every command word once (or ``takes_per_voice`` times) at its own speed and pitch, with a
little per-take variation, placed at a random offset in a one-second window over background noise.
A ``noise`` class (white, pink and brown noise, mains hum) plays the role of ``_background_noise_``.
"""

from __future__ import annotations

import csv
import itertools
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

DEFAULT_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
NOISE_LABEL = "noise"
BASE_VOICES = (
    "en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
NOISE_KINDS = ("white", "pink", "brown", "hum")
INSTALL_HINT = "apt-get install -y espeak-ng sox"
MANIFEST = "manifest.csv"


class DemoCorpusError(RuntimeError):
    pass


@dataclass(frozen=True)
class Voice:
    speaker: str
    voice: str
    speed: int
    pitch: int


def available_voices(seed: int = 0) -> list[Voice]:
    """Every base voice x variant, each with its own speaking rate and pitch, in an order fixed by the seed.

    The order interleaves variants so that the first n voices differ in both accent and voice.
    """
    rng = random.Random(seed)
    bases = list(BASE_VOICES)
    rng.shuffle(bases)
    combos = [(bases[(index + round_) % len(bases)], variant)
              for round_ in range(len(bases)) for index, variant in enumerate(VARIANTS)]
    return [
        Voice(speaker=f"{base}+{variant}", voice=f"{base}+{variant}", speed=rng.randint(135, 185),
              pitch=rng.randint(30, 70))
        for base, variant in combos
    ]


def generate_demo_corpus(
    out_dir: Path,
    words: Sequence[str] = DEFAULT_WORDS,
    n_voices: int = 20,
    sample_rate: int = 16000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    takes_per_voice: int = 1,
    n_noise_clips: int | None = None,
    workers: int = 2,
) -> list[dict]:
    """Write one-second mono 16-bit WAV clips under ``out_dir`` plus ``manifest.csv`` (file,label,speaker).

    Returns rows ``{"path": Path, "label": str, "speaker": str}``; noise clips have an empty speaker.
    ``n_noise_clips`` defaults to the number of clips per word, so every class is equally large.
    """
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise DemoCorpusError(f"espeak-ng is not installed; install it with: {INSTALL_HINT}")
    words = list(dict.fromkeys(word.strip().lower() for word in words if word.strip()))
    if not words:
        raise DemoCorpusError("no words to speak")
    voices = available_voices(seed)
    if not 1 <= n_voices <= len(voices):
        raise DemoCorpusError(f"n_voices must be between 1 and {len(voices)}, got {n_voices}")
    if takes_per_voice < 1:
        raise DemoCorpusError(f"takes_per_voice must be at least 1, got {takes_per_voice}")
    n_noise = n_voices * takes_per_voice if n_noise_clips is None else n_noise_clips

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, Voice | None, int]] = [
        (word, voice, take)
        for voice, word, take in itertools.product(voices[:n_voices], words, range(takes_per_voice))
    ]
    jobs += [(NOISE_LABEL, None, index) for index in range(n_noise)]
    total = len(jobs)
    done = 0

    def make(position: int) -> dict:
        label, voice, take = jobs[position]
        rng = np.random.default_rng([seed, position])
        if voice is None:
            kind = NOISE_KINDS[take % len(NOISE_KINDS)]
            audio = noise(kind, sample_rate, sample_rate, rng) * rng.uniform(0.01, 0.18)  # RMS; peaks stay below 1
            path = out_dir / NOISE_LABEL / f"{NOISE_LABEL}_{kind}_{take:03d}.wav"
            speaker = ""
        else:
            audio = _spoken_clip(espeak, label, voice, sample_rate, rng)
            path = out_dir / label / f"{label}_{_slug(voice.speaker)}_{take}.wav"
            speaker = voice.speaker
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, np.clip(audio, -1.0, 1.0).astype(np.float32), sample_rate, subtype="PCM_16")
        return {"path": path, "label": label, "speaker": speaker}

    rows: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for row in pool.map(make, range(total)):
            rows.append(row)
            done += 1
            if progress is not None:
                progress(done, total)

    with open(out_dir / MANIFEST, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "speaker"])
        for row in rows:
            writer.writerow([row["path"].relative_to(out_dir).as_posix(), row["label"], row["speaker"]])
    return rows


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _spoken_clip(espeak: str, word: str, voice: Voice, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    speed = int(voice.speed + rng.integers(-12, 13))
    pitch = int(np.clip(voice.pitch + rng.integers(-8, 9), 0, 99))
    limit = int(0.95 * sample_rate)
    for _ in range(6):
        speech = _trim_silence(_synthesize(espeak, word, voice.voice, speed, pitch, sample_rate), sample_rate)
        if len(speech) <= limit:
            break
        speed += 25
    else:
        speech = speech[:limit]
    speech = speech / max(float(np.abs(speech).max()), 1e-6) * rng.uniform(0.3, 0.9)

    clip = np.zeros(sample_rate, dtype=np.float64)
    offset = int(rng.integers(0, sample_rate - len(speech) + 1))
    clip[offset : offset + len(speech)] = speech
    speech_rms = float(np.sqrt(np.mean(speech**2)))
    background = noise(NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))], sample_rate, sample_rate, rng)
    snr_db = rng.uniform(10.0, 30.0)
    clip += background * speech_rms / 10 ** (snr_db / 20)
    return clip


def _synthesize(espeak: str, word: str, voice: str, speed: int, pitch: int, sample_rate: int) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        wav_path = Path(tmp) / "word.wav"
        command = [espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav_path), word]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0 or not wav_path.exists():
            raise DemoCorpusError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip() or result.returncode}")
        data, rate = soundfile.read(wav_path, dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1))
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    if wave.numel() == 0 or float(wave.abs().max()) == 0.0:
        raise DemoCorpusError(f"espeak-ng produced silence for voice {voice!r} and word {word!r}")
    return wave.double().numpy()


def _trim_silence(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    loud = np.flatnonzero(np.abs(wave) > 0.02 * np.abs(wave).max())
    margin = int(0.02 * sample_rate)
    return wave[max(0, loud[0] - margin) : loud[-1] + margin + 1]


def noise(kind: str, length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: white, pink (1/f), brown (1/f^2) or 50/60 Hz mains hum with harmonics."""
    if kind == "hum":
        t = np.arange(length) / sample_rate
        mains = rng.choice([50.0, 60.0])
        signal = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi))
                     for k in range(1, 8))
        signal = signal + 0.05 * rng.standard_normal(length)
    else:
        spectrum = np.fft.rfft(rng.standard_normal(length))
        frequencies = np.fft.rfftfreq(length, 1 / sample_rate)
        frequencies[0] = frequencies[1]
        exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[kind]
        signal = np.fft.irfft(spectrum / frequencies**exponent, n=length)
    return signal / max(float(np.sqrt(np.mean(signal**2))), 1e-12)
