"""The detection benchmark's own arithmetic: where held-out false accepts fall, and detectors' scores averaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.bench_detection import false_accept_sources, sources_line
from bench.detection_ensemble import averaged_stream, report
from training_app.ml.data import BACKGROUND, ClipRecord
from training_app.ml.streaming import StreamScores


def _recording(folder: Path, name: str, rows: list[tuple[float, float, str, str]]) -> ClipRecord:
    path = folder / name
    lines = ["start\tend\ttext\tconfusable"] + [f"{a:.3f}\t{b:.3f}\t{text}\t{phrase}" for a, b, text, phrase in rows]
    path.with_suffix(".tsv").write_text("\n".join(lines) + "\n")
    return ClipRecord(name, path, "", name, "", 60.0, kind=BACKGROUND)


def test_false_accepts_are_placed_on_confusable_sentences_other_speech_or_pauses(tmp_path):
    one = _recording(tmp_path, "background_02.wav", [
        (1.0, 3.0, "the hey margo coffee", "hey margo"), (10.0, 12.0, "open the window", ""),
        (20.0, 22.0, "marlo is late", "marlo"),
    ])
    two = _recording(tmp_path, "background_04.wav", [(5.0, 7.0, "hey barlow", "hey barlow")])
    held = {"per_recording": [
        # events: start, end, peak time, score; the peak's 1 s window decides
        {"name": "background_02.wav", "false_accepts": 3,
         "events": [[1.0, 2.5, 2.0, 0.99], [10.2, 11.5, 11.0, 0.97], [15.0, 16.0, 15.5, 0.95]]},
        {"name": "background_04.wav", "false_accepts": 1, "events": [[6.4, 8.0, 7.4, 0.98]]},
    ]}

    sources = false_accept_sources(held, [one, two], window_seconds=1.0)

    assert sources == {"confusable": 2, "other speech": 1, "pause": 1,
                       "phrases": {"hey margo": 1, "hey barlow": 1}, "chances": 3}
    assert sources_line(sources) == (
        '2 on a sentence holding a confusable phrase ("hey margo" 1, "hey barlow" 1), 1 on other speech, 1 in pauses; '
        "the held-out recordings hold 3 sentences with a confusable phrase")
    # A recording made elsewhere has no listing: the breakdown is not known rather than wrong.
    (tmp_path / "background_04.tsv").unlink()
    assert false_accept_sources(held, [one, two], 1.0) is None
    assert sources_line(None).startswith("not known")


def test_scores_of_detectors_with_different_windows_are_averaged_over_the_longer_window():
    hop = 0.1
    short = StreamScores(np.array([0.0, 0.9, 0.0, 0.0, 0.0, 0.2, 0.0]), hop, 1.0, 1.5)  # 1 s windows
    long = StreamScores(np.array([0.5, 0.1, 0.3]), hop, 1.4, 1.5)  # 1.4 s windows: 5 short ones inside each

    combined = averaged_stream([short, long])

    assert combined.window_seconds == 1.4 and combined.duration_seconds == 1.5
    # frame j: the long window's score and the best short window inside it ([j, j + 4]), averaged
    assert combined.scores == pytest.approx([(0.5 + 0.9) / 2, (0.1 + 0.9) / 2, (0.3 + 0.2) / 2])
    # Hops of their own (the speech embedding's 80 ms against 100 ms): on the longer window's frames.
    coarse = StreamScores(np.array([0.4, 0.6]), 0.2, 1.4, 1.5)  # windows at 0 and 0.2 s
    assert averaged_stream([short, coarse]).scores == pytest.approx([(0.4 + 0.9) / 2, (0.6 + 0.2) / 2])


def test_report_gives_the_jobs_figures_from_kept_scores():
    hop = 0.1
    quiet = np.zeros(36000)  # an hour of frames

    def with_peaks(frames: list[int]) -> StreamScores:
        scores = quiet.copy()
        scores[frames] = 0.8
        return StreamScores(scores, hop, 1.0, 3600.0)

    scores = {
        "names": ["background_02.wav"],
        "calibration": (np.array([0.9, 0.95, 0.5, 0.85]), [with_peaks([100])]),  # one accept an hour is over 0.5
        "held_out": (np.array([0.9, 0.7, 0.99, 0.95]), [with_peaks([50, 5000, 5010])]),
    }

    result = report(scores, 0.5, [])

    assert result["threshold"] == pytest.approx(0.825)  # between the validation stream's 0.8 and the next positive
    assert result["frr"] == 0.25 and result["false_accepts"] == 0 and result["fa_per_hour"] == 0.0
    assert result["per_recording"] == "0" and result["sources"] is None
    assert result["best"] == (0.25, 0.0)  # the threshold chosen on the test audio: just above its 0.8 either way
    # The diagnosis: at the highest threshold that accepts 95% of the wake phrases (here all four: 0.7), two false
    # accepts in the hour (frames 5000 and 5010 are one, 1 s apart within the refractory period).
    target = result["at_target"]
    assert (target["threshold"], target["frr"], target["fa_per_hour"]) == (0.7, 0.0, 2.0)
    assert target["per_recording"] == "2" and target["sources"] is None
