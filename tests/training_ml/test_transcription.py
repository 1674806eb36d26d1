"""Transcription's pieces without training: normalisation, vocabulary, CTC decoding, error rates, data checks,
batching, padded batches, segmenting long files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training_app.ml.config import ConfigError, TrainConfig
from training_app.ml.data import ClipRecord, check_trainable
from training_app.ml.text import (
    TextNormalization, build_vocabulary, decode, encode, error_rates, number_words, out_of_vocabulary, text_steps,
    words_with_times,
)


def config(**overrides) -> TrainConfig:
    return TrainConfig.from_dict("quick", {"task": "transcription", **overrides})


def test_normalisation_is_configurable_and_keeps_apostrophes_inside_words():
    text = "  Turn the Lights ON, please! Don't wait 21 minutes…"
    assert TextNormalization().apply(text) == "turn the lights on please don't wait 21 minutes"
    assert TextNormalization(case="keep").apply(text) == "Turn the Lights ON please Don't wait 21 minutes"
    assert TextNormalization(punctuation="keep").apply(text) == "turn the lights on, please! don't wait 21 minutes..."  # NFKC
    assert TextNormalization(numbers="words").apply("Set 21 timers, 1005 s") == "set twenty one timers one thousand five s"
    assert number_words(1_234_567) == "one million two hundred thirty four thousand five hundred sixty seven"
    assert "numbers spelt out" in TextNormalization(numbers="words").describe()


def test_text_settings_are_validated_by_name():
    assert config(text_case="keep").text_case == "keep"
    with pytest.raises(ConfigError) as error:
        config(numbers="roman")
    assert error.value.field == "numbers" and "as_written, words" in error.value.message


def test_vocabulary_comes_from_training_text_and_unknown_characters_are_counted():
    vocabulary = build_vocabulary(["turn on", "go"])
    assert vocabulary == [" ", "g", "n", "o", "r", "t", "u"]
    assert out_of_vocabulary(["stop", "go!"], vocabulary) == {"p": 1, "s": 1, "!": 1}
    assert encode("go up", vocabulary) == [2, 4, 1, 7]  # "p" is not in the vocabulary: skipped
    assert text_steps("all") == 4  # a blank between the two l's


def test_greedy_decoding_merges_repeats_drops_blanks_and_times_words():
    vocabulary = [" ", "a", "b"]
    frames = [0, 2, 2, 0, 2, 3, 0, 1, 1, 3, 3]  # a a _ a b _ ␣ ␣ b b
    assert decode(frames, vocabulary) == "aab b"
    words = words_with_times(frames, vocabulary, frame_seconds=0.02, offset=1.0)
    assert words == [{"word": "aab", "start": 1.02, "end": 1.12}, {"word": "b", "start": 1.18, "end": 1.22}]


def test_error_rates_are_edits_over_reference_length():
    rates = error_rates(["turn on", "go"], ["turn of", "go"])
    assert rates["cer"] == pytest.approx(1 / 9) and rates["wer"] == pytest.approx(1 / 3)
    assert rates["sentence_accuracy"] == 0.5 and rates["reference_words"] == 3


def _clip(index: int, transcript: str, duration: float = 1.0, speaker: str = "") -> ClipRecord:
    return ClipRecord(id=index, path=f"{index}.wav", label="", content_hash=str(index), speaker=speaker or f"v{index % 3}",
                      duration=duration, transcript=transcript)


def test_data_checks_name_each_bad_clip():
    clips = [_clip(i, "turn on") for i in range(20)]
    clips += [_clip(90, "  "), _clip(91, "?!"), _clip(92, "abcdefghij" * 3, duration=0.4)]
    problems = check_trainable(clips, config())
    assert problems == [
        "clip 90: its transcript is only whitespace",
        "clip 91: its transcript ('?!') is empty after normalisation (lower-cased, punctuation removed "
        "(apostrophes inside words kept), numbers as written, whitespace collapsed)",
        "clip 92: its transcript has 30 characters (needing 30 CTC frames) but its 0.40 s of audio give only 21; "
        "is the transcript for this clip?",
    ]
    assert check_trainable(clips[:20], config()) == []
    assert check_trainable(clips[:19], config()) == ["transcription needs at least 20 clips with a transcript; 19 have one"]
    assert check_trainable([_clip(i, "go") for i in range(25)], config(holdout_speakers=["nobody"]))[0] == (
        "held-out speakers not found in the data: 'nobody'")


def test_clips_without_transcripts_are_not_trained_on():
    from training_app.ml.data import trainable_clips

    clips = [_clip(1, "go"), _clip(2, ""), _clip(3, " ")]
    assert [clip.id for clip in trainable_clips(clips, config())] == [1, 3]


def test_batches_group_clips_of_similar_length():
    from training_app.ml.ctc import _buckets

    lengths = [10, 500, 12, 480, 11, 510, 13, 490]
    batches = _buckets(range(8), lengths, 4, None)
    assert [sorted(lengths[i] for i in batch) for batch in batches] == [[10, 11, 12, 13], [480, 490, 500, 510]]
    shuffled = _buckets(range(8), lengths, 4, torch.Generator().manual_seed(0))
    assert sorted(map(sorted, shuffled)) == sorted(map(sorted, batches))


def test_a_padded_batch_gives_each_clip_what_it_gives_alone():
    from training_app.ml.ctc import _padded
    from training_app.ml.model import SpeechCTC

    torch.manual_seed(0)
    network = SpeechCTC(5, 40, channels=4, width=16, blocks=2, kernel=5).eval()
    short, long = torch.randn(40, 57), torch.randn(40, 101)
    inputs, lengths = _padded([long, short])
    with torch.no_grad():
        together = network(inputs, lengths)
        alone = network(short[None, None])
    assert alone.shape[1] == SpeechCTC.output_frames(57) == 29
    assert torch.allclose(together[1, :29], alone[0], atol=1e-5)


def test_long_files_are_cut_at_quiet_points_into_segments():
    from training_app.ml.tasks.transcription import model_input, segment_bounds

    rate = 1000
    wave = np.ones(50 * rate, dtype=np.float32)
    wave[17 * rate : 17 * rate + 100] = 0.0  # a pause 17 s in: inside the search window of the first 20 s
    bounds = segment_bounds(wave, rate, max_seconds=20.0, search_seconds=5.0)

    assert bounds[0][0] == 0 and 17 * rate <= bounds[0][1] < 17 * rate + 100
    assert all(end - start <= 20 * rate for start, end in bounds)
    assert [b[0] for b in bounds[1:]] == [b[1] for b in bounds[:-1]] and bounds[-1][1] == len(wave)
    assert segment_bounds(wave[:5000], rate) == [(0, 5000)]
    assert len(model_input(np.ones(1000, np.float32), 4000, 160)) == 4000
    assert len(model_input(np.ones(4001, np.float32), 4000, 160)) == 4160


def test_beam_search_over_the_word_list_prefers_a_listed_word_that_sounds_alike():
    from training_app.ml.text import beam_search, emissions_text, emissions_words

    vocabulary = [" ", "a", "m", "p", "l", "n"]

    def frame(probabilities: dict[int, float]) -> np.ndarray:
        row = np.full(7, -9.0)
        for token, value in probabilities.items():
            row[token] = value
        return row - np.log(np.exp(row).sum())

    # "l", "a", then "n" a little likelier than "m", and a faint "p": greedy reads "lan".
    rows = np.array([frame({5: -0.1}), frame({0: -0.1}), frame({2: -0.1}), frame({0: -0.1}),
                     frame({6: -0.7, 3: -0.9}), frame({0: -0.1}), frame({4: -1.5, 0: -0.4})])
    assert decode(rows.argmax(axis=1).tolist(), vocabulary) == "lan"
    emissions = beam_search(rows, vocabulary, ["lamp", "lap"])
    assert emissions_text(emissions, vocabulary) == "lamp"
    assert emissions_words(emissions, vocabulary, 0.02, offset=1.0) == [{"word": "lamp", "start": 1.0, "end": 1.14}]
    # Without the word in the list, the acoustics win.
    assert emissions_text(beam_search(rows, vocabulary, ["lan"]), vocabulary) == "lan"
