"""Transcripts as the transcription task sees them: normalisation, the character vocabulary, CTC decoding of
frame labels, and error rates (torch-free, so the web process can check and show them).

Normalisation is shown to the user and stored with the version (``TextNormalization.to_dict``), because the
model can only ever write what its normalised training transcripts contained:

- ``case``: "lower" (default; "Lights ON" and "lights on" are the same words) or "keep".
- ``punctuation``: "strip" (default; punctuation other than apostrophes inside words becomes a space) or "keep".
- ``numbers``: "as_written" (default; digits stay digits and must be in the training transcripts to be learnt)
  or "words" (whole numbers up to 999 999 999 are spelt out in English: "7" -> "seven").

Whitespace is always collapsed to single spaces and trimmed.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

CASES = ("lower", "keep")
PUNCTUATION = ("strip", "keep")
NUMBERS = ("as_written", "words")
BLANK = 0  # CTC blank index; vocabulary symbol i has index i + 1
# The CTC model's output frames: log-mel frames (one per hop of 10 ms) subsampled by this factor in time.
CTC_TIME_STRIDE = 2

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class TextNormalization:
    case: str = "lower"
    punctuation: str = "strip"
    numbers: str = "as_written"

    def apply(self, text: str) -> str:
        text = unicodedata.normalize("NFKC", text)
        if self.numbers == "words":
            text = _NUMBER.sub(lambda match: f" {number_words(int(match.group()))} ", text)
        if self.case == "lower":
            text = text.lower()
        if self.punctuation == "strip":
            marked = _keep_inner_apostrophes(text)
            text = "".join(" " if _is_punctuation(char) else char for char in marked).replace("\x00", "'")
        return " ".join(text.split())

    def describe(self) -> str:
        parts = ["lower-cased" if self.case == "lower" else "case kept",
                 "punctuation removed (apostrophes inside words kept)" if self.punctuation == "strip"
                 else "punctuation kept",
                 "numbers spelt out in words" if self.numbers == "words" else "numbers as written"]
        return ", ".join(parts) + ", whitespace collapsed"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _keep_inner_apostrophes(text: str) -> str:
    """Apostrophes between letters (don't, o'clock) are part of the word: mark them so they survive."""
    return re.sub(r"(?<=\w)['’](?=\w)", "\x00", text)


def _is_punctuation(char: str) -> bool:
    if char == "\x00":
        return False
    return unicodedata.category(char)[0] in "PS"


def number_words(value: int) -> str:
    if value < 20:
        return _ONES[value]
    if value < 100:
        tens, ones = divmod(value, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    for size, name in ((10**9, "billion"), (10**6, "million"), (10**3, "thousand")):
        if value >= size:
            if value >= 1000 * size and name == "billion":
                return " ".join(_ONES[int(digit)] for digit in str(value))
            high, rest = divmod(value, size)
            return f"{number_words(high)} {name}" + (f" {number_words(rest)}" if rest else "")
    return str(value)


def build_vocabulary(texts: Iterable[str]) -> list[str]:
    """Every character of the (normalised) training transcripts, sorted; the space comes first."""
    return sorted({char for text in texts for char in text})


def out_of_vocabulary(texts: Iterable[str], vocabulary: Sequence[str]) -> dict[str, int]:
    known = set(vocabulary)
    counts = Counter(char for text in texts for char in text if char not in known)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def encode(text: str, vocabulary: Sequence[str]) -> list[int]:
    """Token ids (1-based; 0 is the blank) of the characters in the vocabulary; others are skipped."""
    index = {char: position + 1 for position, char in enumerate(vocabulary)}
    return [index[char] for char in text if char in index]


def ctc_steps(tokens: Sequence[int]) -> int:
    """CTC frames a token sequence needs at least: one per token plus a blank between equal neighbours."""
    return len(tokens) + sum(1 for a, b in zip(tokens, tokens[1:], strict=False) if a == b)


def ctc_frames(samples: int, hop: int) -> int:
    """Output frames of the CTC model for a waveform of ``samples`` samples (centred STFT, strided conv)."""
    mel_frames = samples // hop + 1
    return (mel_frames - 1) // CTC_TIME_STRIDE + 1


def text_steps(text: str) -> int:
    """CTC frames a character string needs at least (one per character, a blank between doubled letters)."""
    return len(text) + sum(1 for a, b in zip(text, text[1:], strict=False) if a == b)


def collapse(frame_ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """Greedy CTC: (token, first frame, last frame) of each emitted token (repeats merged, blanks dropped)."""
    emitted: list[tuple[int, int, int]] = []
    previous = BLANK
    for frame, token in enumerate(frame_ids):
        token = int(token)
        if token != BLANK:
            if token == previous and emitted:
                emitted[-1] = (token, emitted[-1][1], frame)
            else:
                emitted.append((token, frame, frame))
        previous = token
    return emitted


def decode(frame_ids: Sequence[int], vocabulary: Sequence[str]) -> str:
    return " ".join("".join(vocabulary[token - 1] for token, _, _ in collapse(frame_ids)).split())


def words_with_times(frame_ids: Sequence[int], vocabulary: Sequence[str], frame_seconds: float,
                     offset: float = 0.0) -> list[dict]:
    """Words of the greedy decoding with the time of their first and last emitted character."""
    words: list[dict] = []
    current: list[tuple[str, int, int]] = []

    def flush() -> None:
        if current:
            words.append({
                "word": "".join(char for char, _, _ in current),
                "start": round(offset + current[0][1] * frame_seconds, 3),
                "end": round(offset + (current[-1][2] + 1) * frame_seconds, 3),
            })
            current.clear()

    for token, first, last in collapse(frame_ids):
        char = vocabulary[token - 1]
        if char.isspace():
            flush()
        else:
            current.append((char, first, last))
    flush()
    return words


# Error rates --------------------------------------------------------------------------------------------------

def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_item in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_item != hyp_item))
        previous = current
    return previous[-1]


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float | int | None]:
    """Corpus CER and WER: edits summed over clips divided by reference characters (words) summed."""
    char_edits = word_edits = chars = words = 0
    exact = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        char_edits += edit_distance(reference, hypothesis)
        word_edits += edit_distance(reference.split(), hypothesis.split())
        chars += len(reference)
        words += len(reference.split())
        exact += reference == hypothesis
    return {
        "cer": char_edits / chars if chars else None,
        "wer": word_edits / words if words else None,
        "sentence_accuracy": exact / len(references) if references else None,
        "clips": len(references),
        "reference_chars": chars,
        "reference_words": words,
    }


def clip_rates(reference: str, hypothesis: str) -> dict[str, float]:
    chars = max(1, len(reference))
    words = max(1, len(reference.split()))
    return {"cer": edit_distance(reference, hypothesis) / chars,
            "wer": edit_distance(reference.split(), hypothesis.split()) / words}


# Word-list beam search ----------------------------------------------------------------------------------------------

# Log-probability added for each word outside the word list (a soft constraint: a word the acoustics are sure of
# still comes out), and the candidates tried per frame.
UNKNOWN_WORD_PENALTY = -6.0
CANDIDATE_FLOOR = -8.0
MAX_CANDIDATES = 6


def lexicon_penalty(text: str, words: frozenset[str], prefixes: frozenset[str], final: bool) -> float:
    """UNKNOWN_WORD_PENALTY per complete word outside ``words``, and for a trailing partial word that no
    listed word starts with (or, at the end, that is not a listed word)."""
    parts = text.split(" ")
    complete, trailing = parts[:-1], parts[-1]
    unknown = sum(1 for word in complete if word and word not in words)
    if trailing and (trailing not in words if final else trailing not in prefixes):
        unknown += 1
    return UNKNOWN_WORD_PENALTY * unknown


def beam_search(log_probs, vocabulary: Sequence[str], words: Iterable[str], beam: int = 8) -> list[tuple[int, int]]:
    """CTC prefix beam search steered by a word list; returns the best path's (token, frame) emissions.

    Each prefix keeps the log-probability of ending in a blank and in its last symbol; its score adds
    ``lexicon_penalty`` of its text, so spellings outside the word list lose to listed words that sound alike.
    """
    import math

    import numpy as np

    log_probs = np.asarray(log_probs, dtype=np.float64)
    word_set = frozenset(words)
    prefixes = frozenset(word[:i] for word in word_set for i in range(1, len(word) + 1))
    negative_infinity = -math.inf

    def add(a: float, b: float) -> float:
        if a == negative_infinity:
            return b
        if b == negative_infinity:
            return a
        high, low = (a, b) if a > b else (b, a)
        return high + math.log1p(math.exp(low - high))

    def text_of(prefix: tuple[int, ...]) -> str:
        return "".join(vocabulary[token - 1] for token in prefix)

    penalties: dict[tuple[int, ...], float] = {}

    def penalty(prefix: tuple[int, ...], final: bool = False) -> float:
        if final:
            return lexicon_penalty(" ".join(text_of(prefix).split()), word_set, prefixes, True)
        if prefix not in penalties:
            penalties[prefix] = lexicon_penalty(text_of(prefix).lstrip(" "), word_set, prefixes, False)
        return penalties[prefix]

    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, negative_infinity]}
    frames: dict[tuple[int, ...], tuple[int, ...]] = {(): ()}
    for t, row in enumerate(log_probs):
        order = np.argsort(row[1:])[::-1][:MAX_CANDIDATES] + 1
        candidates = [int(token) for token in order if row[token] > CANDIDATE_FLOOR]
        following: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_blank, p_symbol) in beams.items():
            total = add(p_blank, p_symbol)
            entry = following.setdefault(prefix, [negative_infinity, negative_infinity])
            entry[0] = add(entry[0], total + row[BLANK])
            last = prefix[-1] if prefix else None
            for token in candidates:
                p = row[token]
                if token == last:
                    entry[1] = add(entry[1], p_symbol + p)
                    source = p_blank + p
                else:
                    source = total + p
                extended = prefix + (token,)
                target = following.setdefault(extended, [negative_infinity, negative_infinity])
                if extended not in frames or target[1] < source:
                    frames[extended] = frames[prefix] + (t,)
                target[1] = add(target[1], source)
        ranked = sorted(following.items(), key=lambda item: add(*item[1]) + penalty(item[0]), reverse=True)
        beams = dict(ranked[:beam])
    best = max(beams.items(), key=lambda item: add(*item[1]) + penalty(item[0], final=True))[0]
    return list(zip(best, frames[best], strict=True))


def emissions_text(emissions: Sequence[tuple[int, int]], vocabulary: Sequence[str]) -> str:
    return " ".join("".join(vocabulary[token - 1] for token, _ in emissions).split())


def emissions_words(emissions: Sequence[tuple[int, int]], vocabulary: Sequence[str], frame_seconds: float,
                    offset: float = 0.0) -> list[dict]:
    """Words of a beam-search path with the time of their first and last character."""
    words: list[dict] = []
    current: list[tuple[str, int]] = []
    for token, frame in [*emissions, (None, None)]:
        char = vocabulary[token - 1] if token is not None else " "
        if char.isspace():
            if current:
                words.append({"word": "".join(c for c, _ in current),
                              "start": round(offset + current[0][1] * frame_seconds, 3),
                              "end": round(offset + (current[-1][1] + 1) * frame_seconds, 3)})
                current = []
        else:
            current.append((char, frame))
    return words
