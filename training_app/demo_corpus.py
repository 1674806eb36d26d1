"""Demo corpora spoken by synthetic espeak-ng voices (no Django here), one per task.

- ``generate_demo_corpus`` (classification): speech-commands style. Each voice says every command word once
  (or ``takes_per_voice`` times) at its own speed and pitch, with a little per-take variation, placed at a
  random offset in a one-second window over background noise. A ``noise`` class (white, pink and brown noise,
  mains hum) plays the role of ``_background_noise_``.
- ``generate_scores_corpus`` (regression): the same words buried in noise at a known SNR, scored by it.
- ``generate_wakeword_corpus`` (detection): a wake phrase, confusable phrases, other words, noise and long
  background recordings.
- ``generate_hard_corpus`` (classification, the hard benchmark): keyword pairs that differ by one sound, an
  ``unknown`` class whose held-out voices say words no training voice says, noise, and speech down to 8 dB SNR.

Every speaker is recorded on its clips, so voices can be held out.
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

# --kind scores: speech in noise, scored by its SNR.
SCORE_SNR_RANGE_DB = (-5.0, 25.0)

# --kind wakeword
WAKE_PHRASE = "hey marlo"
WAKE_LABEL = "hey_marlo"
CONFUSABLE_LABEL = "confusable"
OTHER_LABEL = "other"
CONFUSABLE_PHRASES = ("hey marco", "hey carlo", "hey mario", "hey margo", "hey barlow", "marlo", "hello", "harlow")
BASE_CONFUSABLE_TAKES = 2  # drawn with the other words; more confusable takes are drawn apart (see the generator)
OTHER_WORDS = (*DEFAULT_WORDS, "okay", "music", "weather", "lights", "timer", "morning", "thanks", "later", "seven")
BACKGROUND_WORDS = (
    "the", "a", "we", "you", "it", "is", "was", "to", "and", "of", "in", "at", "for", "with", "that", "this",
    "weather", "nice", "today", "tomorrow", "market", "dinner", "ready", "book", "please", "call", "mother",
    "morning", "evening", "coffee", "garden", "window", "open", "close", "table", "kitchen", "music", "loud",
    "quiet", "meeting", "later", "seven", "eleven", "train", "late", "again", "really", "think", "maybe", "sure",
    "car", "marble", "harbour", "carpet", "hallo", "money", "mellow", "tomato", "pillow", "yellow", "follow",
)
BACKGROUND_FOLDER = "background"

# --kind hard: what users' keyword data looks like. Each pair differs by one sound.
HARD_PAIRS = (("bottle", "battle"), ("cable", "table"), ("light", "night"), ("fan", "van"), ("coat", "goat"))
HARD_WORDS = tuple(word for pair in HARD_PAIRS for word in pair)
UNKNOWN_LABEL = "unknown"
# Other words: the training voices say the first list, the held-out voices only the second, so every unknown
# word heard at test time is new to the model (the open set). Both lists hold near-misses of the keywords.
UNKNOWN_TRAIN_WORDS = (
    "apple", "river", "garden", "window", "pencil", "yellow", "seven", "music", "paper", "rocket", "silver",
    "monkey", "doctor", "pillow", "orange", "basket", "summer", "wagon", "saddle", "fable", "bite", "man", "boat",
    "little",
)
UNKNOWN_TEST_WORDS = (
    "candle", "dinner", "marble", "puppet", "finger", "ladder", "hammer", "cotton", "kitten", "jacket", "lemon",
    "sugar", "turtle", "pepper", "rabbit", "tunnel", "velvet", "market", "rattle", "label", "kite", "pan", "note",
    "metal",
)
HARD_SNR_RANGE_DB = (8.0, 25.0)
WAKEWORD_CLIP_SECONDS = 1.5


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
    espeak = _espeak()
    words = _clean_words(words)
    voices = _check_voices(n_voices, seed)
    if takes_per_voice < 1:
        raise DemoCorpusError(f"takes_per_voice must be at least 1, got {takes_per_voice}")
    n_noise = n_voices * takes_per_voice if n_noise_clips is None else n_noise_clips

    jobs: list[tuple[str, Voice | None, int]] = [
        (word, voice, take)
        for voice, word, take in itertools.product(voices[:n_voices], words, range(takes_per_voice))
    ]
    jobs += [(NOISE_LABEL, None, index) for index in range(n_noise)]
    out_dir = Path(out_dir)

    def make(position: int) -> dict:
        label, voice, take = jobs[position]
        rng = np.random.default_rng([seed, position])
        if voice is None:
            return _noise_row(out_dir, take, sample_rate, rng)
        audio = _spoken_clip(espeak, label, voice, sample_rate, rng)
        path = out_dir / label / f"{label}_{_slug(voice.speaker)}_{take}.wav"
        _write_clip(path, audio, sample_rate)
        return {"path": path, "label": label, "speaker": voice.speaker}

    return _make_all(out_dir, len(jobs), make, ("label", "speaker"), progress, workers)


def snr_to_score(snr_db: float) -> float:
    """The scores corpus's quality score: 0 at the lowest SNR, 1 at the highest, linear in dB between them."""
    low, high = SCORE_SNR_RANGE_DB
    return round(float(np.clip((snr_db - low) / (high - low), 0.0, 1.0)), 4)


def generate_scores_corpus(
    out_dir: Path,
    words: Sequence[str] = DEFAULT_WORDS,
    n_voices: int = 20,
    sample_rate: int = 16000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    takes_per_voice: int = 1,
    workers: int = 2,
) -> list[dict]:
    """One-second spoken words, each buried in noise at an SNR drawn uniformly from ``SCORE_SNR_RANGE_DB``; the
    clip's score is that SNR mapped to [0, 1] (``snr_to_score``), so a listener hears the score: the noisier,
    the lower. Label and transcript are the word; ``manifest.csv`` has file,label,transcript,score,speaker.
    """
    espeak = _espeak()
    words = _clean_words(words)
    voices = _check_voices(n_voices, seed)
    if takes_per_voice < 1:
        raise DemoCorpusError(f"takes_per_voice must be at least 1, got {takes_per_voice}")
    jobs = list(itertools.product(voices[:n_voices], words, range(takes_per_voice)))
    out_dir = Path(out_dir)

    def make(position: int) -> dict:
        voice, word, take = jobs[position]
        rng = np.random.default_rng([seed, position])
        snr_db = float(rng.uniform(*SCORE_SNR_RANGE_DB))
        audio = _spoken_clip(espeak, word, voice, sample_rate, rng, snr_db=snr_db, peak=(0.15, 0.35))
        path = out_dir / word / f"{word}_{_slug(voice.speaker)}_{take}.wav"
        _write_clip(path, audio, sample_rate)
        return {"path": path, "label": word, "transcript": word, "score": snr_to_score(snr_db),
                "speaker": voice.speaker, "snr_db": snr_db}

    return _make_all(out_dir, len(jobs), make, ("label", "transcript", "score", "speaker"), progress, workers)


def generate_wakeword_corpus(
    out_dir: Path,
    n_voices: int = 20,
    sample_rate: int = 16000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    positive_takes: int = 4,
    confusable_takes: int = 2,
    other_takes: int = 4,
    n_noise_clips: int | None = None,
    n_backgrounds: int = 2,
    background_minutes: float = 5.0,
    workers: int = 2,
) -> list[dict]:
    """A wake-word corpus: ``WAKE_PHRASE`` (label ``WAKE_LABEL``), confusable phrases (``confusable``), other
    words (``other``) and noise, in clips of ``WAKEWORD_CLIP_SECONDS``; plus ``n_backgrounds`` long background
    recordings (``background/``, ``kind`` background in the manifest) of ordinary speech and pauses over room
    noise, spoken by voices that say none of the clips, with no wake phrase in them.

    Each voice says the wake phrase ``positive_takes`` times, and ``confusable_takes`` confusable phrases and
    ``other_takes`` other words drawn at random. The first two confusable phrases of each voice are drawn as they
    always were and any more come last, from the phrases that voice has not said, so a corpus with more
    confusable takes holds the default corpus unchanged (the same clips and background recordings, byte for
    byte) plus the extra clips. Noise clips default to as many as the positive clips. The manifest has
    file,label,transcript,speaker,kind.

    Next to each background recording, ``background_NN.tsv`` lists what it speaks: one row per sentence with its
    start and end in seconds, its text and the confusable phrase inserted into it (empty for none). The pauses
    are the gaps between rows. The listing is a document, not audio: dataset imports skip it.
    """
    espeak = _espeak()
    voices = _check_voices(n_voices, seed)
    if positive_takes < 1 or min(confusable_takes, other_takes, n_backgrounds) < 0:
        raise DemoCorpusError("each voice says the wake phrase at least once; other counts cannot be negative")
    if confusable_takes > len(CONFUSABLE_PHRASES) or other_takes > len(OTHER_WORDS):
        raise DemoCorpusError(f"a voice says at most {len(CONFUSABLE_PHRASES)} confusable phrases and "
                              f"{len(OTHER_WORDS)} other words")
    if n_backgrounds and background_minutes <= 0:
        raise DemoCorpusError(f"background_minutes must be positive, got {background_minutes}")
    n_noise = n_voices * positive_takes if n_noise_clips is None else n_noise_clips
    choices = random.Random(seed)
    jobs: list[tuple[str, str, Voice | None, int]] = []
    extra_choices = random.Random(f"{seed}-confusable")
    extra_jobs: list[tuple[str, str, Voice | None, int]] = []
    for voice in voices[:n_voices]:
        jobs += [(WAKE_LABEL, WAKE_PHRASE, voice, take) for take in range(positive_takes)]
        said = choices.sample(CONFUSABLE_PHRASES, min(confusable_takes, BASE_CONFUSABLE_TAKES))
        jobs += [(CONFUSABLE_LABEL, phrase, voice, take) for take, phrase in enumerate(said)]
        jobs += [(OTHER_LABEL, word, voice, take) for take, word in enumerate(choices.sample(OTHER_WORDS, other_takes))]
        unsaid = [phrase for phrase in CONFUSABLE_PHRASES if phrase not in said]
        extra_jobs += [(CONFUSABLE_LABEL, phrase, voice, take) for take, phrase in enumerate(
            extra_choices.sample(unsaid, max(0, confusable_takes - len(said))), start=len(said))]
    jobs += [(NOISE_LABEL, "", None, index) for index in range(n_noise)]
    background_voices = [voices[(n_voices + index) % len(voices)] for index in range(3 * n_backgrounds)]
    out_dir = Path(out_dir)

    def make(position: int) -> dict:
        rng = np.random.default_rng([seed, position])
        if len(jobs) <= position < len(jobs) + n_backgrounds:
            index = position - len(jobs)
            path = out_dir / BACKGROUND_FOLDER / f"background_{index + 1:02d}.wav"
            seconds = _write_background(path, espeak, background_voices[3 * index : 3 * index + 3],
                                        background_minutes * 60, sample_rate, rng)
            return {"path": path, "label": "", "transcript": "", "speaker": "", "kind": "background",
                    "seconds": seconds}
        label, text, voice, take = (jobs[position] if position < len(jobs)
                                    else extra_jobs[position - len(jobs) - n_backgrounds])
        if voice is None:
            row = _noise_row(out_dir, take, sample_rate, rng, seconds=WAKEWORD_CLIP_SECONDS)
            return {**row, "kind": "clip"}
        audio = _spoken_clip(espeak, text, voice, sample_rate, rng, seconds=WAKEWORD_CLIP_SECONDS)
        path = out_dir / label / f"{label}_{_slug(text)}_{_slug(voice.speaker)}_{take}.wav"
        _write_clip(path, audio, sample_rate)
        return {"path": path, "label": label, "transcript": text, "speaker": voice.speaker, "kind": "clip"}

    columns = ("label", "transcript", "speaker", "kind")
    return _make_all(out_dir, len(jobs) + n_backgrounds + len(extra_jobs), make, columns, progress, workers)


def hard_holdout_voices(n_voices: int, n_holdout: int, seed: int = 0) -> list[str]:
    """The speakers of ``generate_hard_corpus`` that say the unseen unknown words: the last ``n_holdout``."""
    return [voice.speaker for voice in available_voices(seed)[n_voices - n_holdout : n_voices]] if n_holdout else []


def generate_hard_corpus(
    out_dir: Path,
    n_voices: int = 48,
    n_holdout: int = 12,
    sample_rate: int = 16000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    unknown_takes: int = 3,
    n_noise_clips: int | None = None,
    workers: int = 2,
) -> list[dict]:
    """The hard keyword benchmark: every voice says the ten ``HARD_WORDS`` (five pairs a sound apart) once and
    ``unknown_takes`` other words (label ``unknown``), each over noise at 8-25 dB SNR and a level anywhere from
    quiet to loud; plus ``noise`` clips (as many as one keyword's clips by default).

    The last ``n_holdout`` voices (``hard_holdout_voices``) are meant as the test set
    (``holdout_speakers``): their unknown words come from ``UNKNOWN_TEST_WORDS``, which no other voice says, so
    the test measures unknown words never heard in training. ``manifest.csv`` has file,label,transcript,speaker.
    """
    espeak = _espeak()
    voices = _check_voices(n_voices, seed)
    if not 0 <= n_holdout < n_voices:
        raise DemoCorpusError(f"n_holdout must be between 0 and {n_voices - 1}, got {n_holdout}")
    if not 0 <= unknown_takes <= min(len(UNKNOWN_TRAIN_WORDS), len(UNKNOWN_TEST_WORDS)):
        raise DemoCorpusError(f"unknown_takes must be between 0 and {len(UNKNOWN_TEST_WORDS)}, got {unknown_takes}")
    n_noise = n_voices if n_noise_clips is None else n_noise_clips
    held = set(hard_holdout_voices(n_voices, n_holdout, seed))
    choices = random.Random(seed)
    jobs: list[tuple[str, str, Voice | None, int]] = []
    for voice in voices[:n_voices]:
        jobs += [(word, word, voice, 0) for word in HARD_WORDS]
        pool = UNKNOWN_TEST_WORDS if voice.speaker in held else UNKNOWN_TRAIN_WORDS
        jobs += [(UNKNOWN_LABEL, word, voice, take) for take, word in enumerate(choices.sample(pool, unknown_takes))]
    jobs += [(NOISE_LABEL, "", None, index) for index in range(n_noise)]
    out_dir = Path(out_dir)

    def make(position: int) -> dict:
        label, text, voice, take = jobs[position]
        rng = np.random.default_rng([seed, position])
        if voice is None:
            return _noise_row(out_dir, take, sample_rate, rng)
        snr_db = float(rng.uniform(*HARD_SNR_RANGE_DB))
        audio = _spoken_clip(espeak, text, voice, sample_rate, rng, snr_db=snr_db, peak=(0.08, 0.9))
        path = out_dir / label / f"{label}_{_slug(text)}_{_slug(voice.speaker)}.wav"
        _write_clip(path, audio, sample_rate)
        return {"path": path, "label": label, "transcript": text, "speaker": voice.speaker, "snr_db": snr_db}

    return _make_all(out_dir, len(jobs), make, ("label", "transcript", "speaker"), progress, workers)


def _write_background(
    path: Path, espeak: str, voices: list[Voice], seconds: float, sample_rate: int, rng: np.random.Generator
) -> float:
    """Sentences of ordinary words (now and then a confusable phrase) and pauses over room noise, written a
    segment at a time so an hour never sits in memory, and the listing of its sentences beside it
    (``background_listing``). Returns the recording's length in seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    total = int(seconds * sample_rate)
    room_kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    room_level = rng.uniform(0.003, 0.015)
    written = 0
    spoken: list[tuple[float, float, str, str]] = []
    with soundfile.SoundFile(path, "w", samplerate=sample_rate, channels=1, subtype="PCM_16") as out:
        while written < total:
            text = None
            if rng.random() < 0.7:
                voice = voices[int(rng.integers(len(voices)))]
                words = [str(w) for w in rng.choice(BACKGROUND_WORDS, size=int(rng.integers(3, 9)))]
                confusable = ""
                if rng.random() < 0.15:
                    at = int(rng.integers(len(words) + 1))
                    confusable = str(rng.choice(CONFUSABLE_PHRASES))
                    words.insert(at, confusable)
                text = " ".join(words)
                speed = int(voice.speed + rng.integers(-12, 13))
                sentence = _synthesize(espeak, text, voice.voice, speed, voice.pitch, sample_rate)
                speech = _trim_silence(sentence, sample_rate)
                segment = speech / max(float(np.abs(speech).max()), 1e-6) * rng.uniform(0.1, 0.6)
            else:
                segment = np.zeros(int(rng.uniform(0.3, 3.0) * sample_rate))
            segment = segment[: total - written]
            if text is not None and len(segment):
                spoken.append((written / sample_rate, (written + len(segment)) / sample_rate, text, confusable))
            segment = segment + noise(room_kind, len(segment), sample_rate, rng) * room_level
            out.write(np.clip(segment, -1.0, 1.0).astype(np.float32))
            written += len(segment)
    with open(background_listing(path), "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(LISTING_COLUMNS)
        writer.writerows((f"{start:.3f}", f"{end:.3f}", text, confusable) for start, end, text, confusable in spoken)
    return written / sample_rate


LISTING_COLUMNS = ("start", "end", "text", "confusable")


def background_listing(recording: Path) -> Path:
    """Where ``generate_wakeword_corpus`` lists what a background recording speaks: ``background_01.tsv``."""
    return Path(recording).with_suffix(".tsv")


def read_background_listing(recording: Path) -> list[dict] | None:
    """The sentences of a generated background recording (start and end in seconds, text, the inserted
    confusable phrase or ""), or None when it has no listing (a recording not made by the generator)."""
    listing = background_listing(recording)
    if not listing.exists():
        return None
    with open(listing, newline="") as handle:
        return [{**row, "start": float(row["start"]), "end": float(row["end"])}
                for row in csv.DictReader(handle, delimiter="\t")]


def _clean_words(words: Sequence[str]) -> list[str]:
    words = list(dict.fromkeys(word.strip().lower() for word in words if word.strip()))
    if not words:
        raise DemoCorpusError("no words to speak")
    return words


def _espeak() -> str:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise DemoCorpusError(f"espeak-ng is not installed; install it with: {INSTALL_HINT}")
    return espeak


def _check_voices(n_voices: int, seed: int) -> list[Voice]:
    voices = available_voices(seed)
    if not 1 <= n_voices <= len(voices):
        raise DemoCorpusError(f"n_voices must be between 1 and {len(voices)}, got {n_voices}")
    return voices


def _make_all(
    out_dir: Path,
    total: int,
    make: Callable[[int], dict],
    columns: Sequence[str],
    progress: Callable[[int, int], None] | None,
    workers: int,
) -> list[dict]:
    """Run ``make(position)`` for every clip (in threads: espeak-ng runs as a process) and write the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for row in pool.map(make, range(total)):
            rows.append(row)
            if progress is not None:
                progress(len(rows), total)
    with open(out_dir / MANIFEST, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", *columns])
        for row in rows:
            writer.writerow([row["path"].relative_to(out_dir).as_posix(), *(_cell(row[c]) for c in columns)])
    return rows


def _cell(value) -> str:
    return "" if value is None else str(value)


def _noise_row(out_dir: Path, index: int, sample_rate: int, rng: np.random.Generator, seconds: float = 1.0) -> dict:
    length = int(seconds * sample_rate)
    kind = NOISE_KINDS[index % len(NOISE_KINDS)]
    audio = noise(kind, length, sample_rate, rng) * rng.uniform(0.01, 0.18)  # RMS; peaks stay below 1
    path = out_dir / NOISE_LABEL / f"{NOISE_LABEL}_{kind}_{index:03d}.wav"
    _write_clip(path, audio, sample_rate)
    return {"path": path, "label": NOISE_LABEL, "speaker": "", "transcript": "", "score": None}


def _write_clip(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.clip(audio, -1.0, 1.0).astype(np.float32), sample_rate, subtype="PCM_16")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _spoken_clip(
    espeak: str,
    text: str,
    voice: Voice,
    sample_rate: int,
    rng: np.random.Generator,
    seconds: float = 1.0,
    snr_db: float | None = None,
    peak: tuple[float, float] = (0.3, 0.9),
) -> np.ndarray:
    """``text`` spoken at a random offset in a clip of ``seconds`` over noise at ``snr_db`` (random 10-30 dB when
    None), the speech peaking at a level drawn from ``peak``."""
    speed = int(voice.speed + rng.integers(-12, 13))
    pitch = int(np.clip(voice.pitch + rng.integers(-8, 9), 0, 99))
    length = int(seconds * sample_rate)
    limit = length - int(0.05 * sample_rate)
    for _ in range(6):
        speech = _trim_silence(_synthesize(espeak, text, voice.voice, speed, pitch, sample_rate), sample_rate)
        if len(speech) <= limit:
            break
        speed += 25
    else:
        speech = speech[:limit]
    speech = speech / max(float(np.abs(speech).max()), 1e-6) * rng.uniform(*peak)

    clip = np.zeros(length, dtype=np.float64)
    offset = int(rng.integers(0, length - len(speech) + 1))
    clip[offset : offset + len(speech)] = speech
    speech_rms = float(np.sqrt(np.mean(speech**2)))
    background = noise(NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))], length, sample_rate, rng)
    if snr_db is None:
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
