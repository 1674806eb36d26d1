"""Text front end of the synthesis task: text -> symbol ids, with the tables stored beside the model.

Torch-free, so the web process can check a text against a voice's vocabulary before it loads the model.
Two modes: ``phonemes`` (IPA from ``espeak-ng -q --ipa``, one symbol per code point, so "ˈ" stress marks and
length marks are symbols of their own) and ``characters`` (the lower-cased transcript). The symbol table is
built from the training transcripts, so a text is speakable when every symbol it turns into was seen in
training; the table, the mode and the espeak-ng voice are written into the version's ``config.json``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

MODES = ("phonemes", "characters")
PAD = "_"
# Between any two symbols when ``add_blank``: gives the alignment a place for transitions (Glow-TTS, VITS).
BLANK = "~"
ESPEAK = "espeak-ng"
ESPEAK_TIMEOUT_SECONDS = 20
MAX_TEXT_CHARACTERS = 2000
MAX_SENTENCE_CHARACTERS = 300
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
_SPACES = re.compile(r"\s+")


class TextError(ValueError):
    """A text the voice cannot speak (too long, or with symbols outside its vocabulary)."""


class FrontendUnavailable(RuntimeError):
    """espeak-ng is not installed (``apt-get install -y espeak-ng``)."""


def normalize_text(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def split_sentences(text: str, limit: int = MAX_SENTENCE_CHARACTERS) -> list[str]:
    """Sentences of ``text`` (split after . ! ? ; : and line breaks); longer ones are cut at spaces."""
    pieces = [normalize_text(part) for part in _SENTENCE_END.split(text)]
    sentences: list[str] = []
    for piece in filter(None, pieces):
        while len(piece) > limit:
            cut = piece.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            sentences.append(piece[:cut].strip())
            piece = piece[cut:].strip()
        if piece:
            sentences.append(piece)
    return sentences


@lru_cache(maxsize=4096)
def espeak_phonemes(text: str, voice: str) -> str:
    """IPA of ``text`` from espeak-ng; its clause breaks (one per output line) become ", "."""
    if shutil.which(ESPEAK) is None:
        raise FrontendUnavailable("the phoneme front end needs espeak-ng (apt-get install -y espeak-ng)")
    completed = subprocess.run(
        [ESPEAK, "-q", "--ipa", "-v", voice, "--", text], capture_output=True, text=True,
        timeout=ESPEAK_TIMEOUT_SECONDS, check=False,
    )
    if completed.returncode != 0:
        raise TextError(f"espeak-ng failed on voice {voice!r}: {completed.stderr.strip()[:200]}")
    lines = [normalize_text(line) for line in completed.stdout.splitlines()]
    return ", ".join(line for line in lines if line)


@dataclass(frozen=True)
class TextFrontend:
    """Turns text into symbol ids. ``symbols[0]`` is the padding symbol, ``symbols[1]`` the blank."""

    mode: str = "phonemes"
    voice: str = "en-us"
    symbols: tuple[str, ...] = (PAD, BLANK)
    add_blank: bool = True
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"text front end {self.mode!r}: use one of {', '.join(MODES)}")
        self._index.update({symbol: index for index, symbol in enumerate(self.symbols)})

    @classmethod
    def build(cls, transcripts: Iterable[str], mode: str = "phonemes", voice: str = "en-us",
              add_blank: bool = True) -> TextFrontend:
        """A front end whose vocabulary is every symbol the transcripts turn into."""
        probe = cls(mode, voice, (PAD, BLANK), add_blank)
        seen = sorted({symbol for text in transcripts for symbol in probe.symbols_of(text)})
        return cls(mode, voice, (PAD, BLANK, *seen), add_blank)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TextFrontend:
        return cls(config["mode"], config.get("voice", ""), tuple(config["symbols"]), bool(config["add_blank"]))

    def to_config(self) -> dict[str, Any]:
        return {"mode": self.mode, "voice": self.voice, "symbols": list(self.symbols), "add_blank": self.add_blank,
                "pad_id": 0, "blank_id": 1 if self.add_blank else None}

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    def symbols_of(self, text: str) -> list[str]:
        text = normalize_text(text)
        if self.mode == "characters":
            return list(text.lower())
        return list(espeak_phonemes(text, self.voice))

    def unknown_symbols(self, text: str) -> list[str]:
        return sorted({symbol for symbol in self.symbols_of(text) if symbol not in self._index})

    def ids(self, text: str) -> list[int]:
        """Symbol ids of one sentence (with blanks between and around symbols when ``add_blank``)."""
        symbols = self.symbols_of(text)
        if not symbols:
            raise TextError("the text has nothing to say")
        unknown = sorted({symbol for symbol in symbols if symbol not in self._index})
        if unknown:
            shown = ", ".join(repr(symbol) for symbol in unknown[:10])
            raise TextError(f"symbols outside this voice's vocabulary ({self.mode}): {shown}")
        ids = [self._index[symbol] for symbol in symbols]
        if not self.add_blank:
            return ids
        with_blanks = [1] * (2 * len(ids) + 1)
        with_blanks[1::2] = ids
        return with_blanks

    def readable(self, ids: Sequence[int]) -> list[str]:
        return [self.symbols[i] for i in ids]


def check_text(frontend: TextFrontend, text: str, max_characters: int = MAX_TEXT_CHARACTERS) -> list[str]:
    """The sentences of ``text`` once it is known to be speakable; TextError names what is wrong."""
    if not isinstance(text, str) or not normalize_text(text):
        raise TextError("text is empty")
    if len(text) > max_characters:
        raise TextError(f"text is {len(text)} characters long; at most {max_characters} are allowed")
    sentences = split_sentences(text)
    unknown = sorted({symbol for sentence in sentences for symbol in frontend.unknown_symbols(sentence)})
    if unknown:
        shown = ", ".join(repr(symbol) for symbol in unknown[:10])
        raise TextError(f"symbols outside this voice's vocabulary ({frontend.mode}): {shown}")
    return sentences
