"""Re-score kept wake-word detectors offline, alone and averaged, without training again.

``bench/bench_detection.py --keep-model DIR`` keeps a trained detector with the scores its evaluation computed
(``scores.npz``: the validation wake phrases' and validation recording's scores the threshold is calibrated on, and
the held-out voices' wake phrases' and held-out recordings' scores it is reported on). This script reads those of
one or more kept detectors trained on the same corpus and split, and reports for each alone (a check: the job's own
figures again) and for their average the calibrated threshold, the false rejects and false accepts per hour on the
held-out audio at that threshold, each recording's false accepts, where they fall (``false_accept_sources``) and the
best test DET point within the budget, computed exactly as the job computes them (``training_app.ml.streaming``);
and, as a diagnosis, the false accepts and where they fall at the threshold that accepts 95% of the held-out wake
phrases.

The average of detectors with different windows (the log-mel CNN's 1 s, the speech embedding head's 2 s): at each
frame, the mean of the longest-window detector's score of its window and, for each other detector, its highest score
among the windows inside that window. A clip's score is the mean of the detectors' clip scores (each the best window
of the clip; a 1.5 s clip fills one 2 s window, whose 1 s windows are the ones inside it, so the two agree).

    .venv/bin/python bench/detection_ensemble.py --corpus DIR --model DIR --model DIR [--name NAME ...]
        [--budget 0.5] [--note TEXT] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import audioml  # noqa: E402, F401  (before torch: sets OMP_WAIT_POLICY, see audioml/__init__.py)
import numpy as np  # noqa: E402

from bench.bench_detection import SECTION, INTRO, clip_records, false_accept_sources, sources_line  # noqa: E402
from bench.common import demo_corpus, publish, timestamp  # noqa: E402
from training_app.ml import streaming  # noqa: E402
from training_app.ml.data import BACKGROUND  # noqa: E402
from training_app.ml.tasks.detection import REFRACTORY_SECONDS  # noqa: E402

ROLES = ("calibration", "held_out")
TARGET_FRR = 0.05
TOP_EVENTS = 20


def load_scores(folder: Path) -> dict:
    """{role: (positive scores, [StreamScores])} and the held-out recordings' names, from ``scores.npz``."""
    data = np.load(folder / "scores.npz")
    loaded: dict = {"names": [str(name) for name in data["held_out_names"]]}
    for role in ROLES:
        streams = [streaming.StreamScores(data[f"{role}_stream_{index}"], hop, window, duration)
                   for index, (hop, window, duration) in enumerate(data[f"{role}_geometry"])]
        loaded[role] = (data[f"{role}_positives"], streams)
    return loaded


def averaged_stream(streams: list[streaming.StreamScores]) -> streaming.StreamScores:
    """One stream's scores of several detectors averaged (see the module's docstring): on the frames of the
    longest-window detector (its hop), each other detector's highest score among its windows that lie inside that
    window (those starting at or after the frame's start and ending by its end)."""
    longest = max(streams, key=lambda stream: stream.window_seconds)
    hop, window = longest.hop_seconds, longest.window_seconds
    starts = np.arange(len(longest.scores)) * hop
    parts = []
    for stream in streams:
        inside = int(np.floor((window - stream.window_seconds) / stream.hop_seconds + 1e-6)) + 1
        first = np.ceil(starts / stream.hop_seconds - 1e-6).astype(int)
        maxima = np.lib.stride_tricks.sliding_window_view(stream.scores, inside).max(axis=1)
        parts.append(maxima[first[first < len(maxima)]])
    frames = min(len(part) for part in parts)
    return streaming.StreamScores(np.mean([part[:frames] for part in parts], axis=0), hop, window,
                                  longest.duration_seconds)


def averaged(detectors: list[dict]) -> dict:
    combined: dict = {"names": detectors[0]["names"]}
    for role in ROLES:
        positives = np.mean([detector[role][0] for detector in detectors], axis=0)
        streams = [averaged_stream([detector[role][1][index] for detector in detectors])
                   for index in range(len(detectors[0][role][1]))]
        combined[role] = (positives, streams)
    return combined


def report(scores: dict, budget: float, backgrounds) -> dict:
    """The job's figures (``tasks.detection.evaluate``) from a detector's scores."""
    val_positives, val_streams = scores["calibration"]
    test_positives, test_streams = scores["held_out"]
    calibration = streaming.calibrate_threshold(val_positives, val_streams, budget, REFRACTORY_SECONDS)
    threshold = calibration.threshold
    per_recording = []
    for name, stream in zip(scores["names"], test_streams, strict=True):
        events = streaming.detect_events(stream, threshold, REFRACTORY_SECONDS)
        per_recording.append({"name": name, "false_accepts": len(events),
                              "events": [[e.start, e.end, e.peak_time, e.score] for e in events]})
    false_accepts = sum(part["false_accepts"] for part in per_recording)
    hours = sum(stream.hours for stream in test_streams)
    held = {"per_recording": per_recording}
    # A diagnosis, not a figure of the detector: at the highest threshold that accepts 95% of the held-out wake
    # phrases (chosen on the test audio), how many false accepts, and where.
    allowed = int(np.floor(TARGET_FRR * len(test_positives) + 1e-9))
    at_target = float(np.sort(test_positives)[allowed])
    target_parts = [{"name": name, "false_accepts": len(events), "events": [[e.start, e.end, e.peak_time, e.score]
                                                                            for e in events]}
                    for name, stream in zip(scores["names"], test_streams, strict=True)
                    for events in [streaming.detect_events(stream, at_target, REFRACTORY_SECONDS)]]
    det = streaming.det_curve(test_positives, test_streams, refractory_seconds=REFRACTORY_SECONDS)
    within = [(point.false_reject_rate, point.false_accepts_per_hour) for point in det
              if point.false_accepts_per_hour <= budget + 1e-9]
    return {
        "threshold": threshold,
        "calibration_frr": calibration.false_reject_rate,
        "frr": float((test_positives < threshold).mean()),
        "positives": len(test_positives),
        "false_accepts": false_accepts,
        "fa_per_hour": false_accepts / hours,
        "minutes": hours * 60,
        "per_recording": " + ".join(str(part["false_accepts"]) for part in per_recording),
        "sources": false_accept_sources(held, backgrounds, test_streams[0].window_seconds),
        "best": min(within) if within else None,
        "at_target": {"threshold": at_target, "frr": float((test_positives < at_target).mean()),
                      "fa_per_hour": sum(part["false_accepts"] for part in target_parts) / hours,
                      "per_recording": " + ".join(str(part["false_accepts"]) for part in target_parts),
                      "sources": false_accept_sources({"per_recording": target_parts}, backgrounds,
                                                      test_streams[0].window_seconds),
                      "top": false_accept_sources(_highest(target_parts, TOP_EVENTS), backgrounds,
                                                  test_streams[0].window_seconds)},
    }


def _highest(parts: list[dict], count: int) -> dict:
    """The ``count`` highest-scoring of these false accepts, as a held-out report of their own."""
    ranked = sorted(((event[3], index, event) for index, part in enumerate(parts) for event in part["events"]),
                    key=lambda item: -item[0])[:count]
    kept = [[event for _, index, event in ranked if index == number] for number in range(len(parts))]
    return {"per_recording": [{**part, "false_accepts": len(events), "events": events}
                              for part, events in zip(parts, kept, strict=True)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus the detectors were trained on")
    parser.add_argument("--model", type=Path, action="append", required=True, dest="models",
                        help="a folder kept by bench_detection.py --keep-model (twice or more to average)")
    parser.add_argument("--name", action="append", default=[], dest="names", help="a name for each --model")
    parser.add_argument("--budget", type=float, default=0.5, help="false accepts per hour")
    parser.add_argument("--note", default="")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    names = args.names or [folder.name for folder in args.models]
    if len(names) != len(args.models):
        parser.error("give one --name per --model, or none")
    rows, _, _ = demo_corpus(args.corpus, None, args.corpus)
    backgrounds = [clip for clip in clip_records(rows) if clip.kind == BACKGROUND]
    detectors = [load_scores(folder) for folder in args.models]
    jobs = [json.loads((folder / "metrics.json").read_text()) for folder in args.models]
    if len({json.dumps([job["seed"], job["split"]], sort_keys=True) for job in jobs}) > 1:
        parser.error("the detectors were trained on different splits (seed or clips differ): their scores do not pair")
    results = [(name, report(scores, args.budget, backgrounds)) for name, scores in zip(names, detectors, strict=True)]
    if len(detectors) > 1:
        results.append((" and ".join(names) + ", averaged", report(averaged(detectors), args.budget, backgrounds)))
    lines = [
        f"### {timestamp()}",
        "",
        *([args.note, ""] if args.note else []),
        f"Re-scored offline (`bench/detection_ensemble.py`) from the scores the jobs computed (kept with "
        f"`--keep-model`); corpus `{args.corpus.name}`; no training, no new audio. "
        + "; ".join(f"{name}: job figures {job['held_out']['false_reject_rate']:.1%} / "
                    f"{job['held_out']['false_accepts_per_hour']:.2f}" for name, job in zip(names, jobs, strict=True))
        + ".",
        "",
        f"| Detector | Threshold (calibrated, ≤ {args.budget:g}/h) | False rejects ({results[0][1]['positives']} held-out "
        f"wake phrases) | False accepts per hour ({results[0][1]['minutes']:.0f} held-out min; per recording) | "
        "Where the false accepts fall | Best within the budget (threshold chosen on the test audio) |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, result in results:
        best = f"{result['best'][0]:.1%} / {result['best'][1]:.2f}" if result["best"] else "none"
        lines.append(f"| {name} | {result['threshold']:.3f} | {result['frr']:.1%} | {result['fa_per_hour']:.2f} "
                     f"({result['per_recording']}) | {sources_line(result['sources'])} | {best} |")
    lines += [
        "",
        f"Where the false accepts come from at the target's false-reject rate: the highest threshold that accepts "
        f"{1 - TARGET_FRR:.0%} of the held-out wake phrases, chosen on the test audio (a diagnosis, not a figure of "
        "the detector):",
        "",
        f"| Detector | Threshold | False rejects | False accepts per hour (per recording) | Where they fall | The "
        f"{TOP_EVENTS} highest-scoring of them |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for name, result in results:
        target = result["at_target"]
        top = target["top"]
        top_line = sources_line(top).split("; the held-out")[0] if top else "not known"
        lines.append(f"| {name} | {target['threshold']:.3f} | {target['frr']:.1%} | {target['fa_per_hour']:.2f} "
                     f"({target['per_recording']}) | {sources_line(target['sources'])} | {top_line} |")
    lines.append("")
    publish(SECTION, INTRO, "\n".join(lines), not args.no_write)


if __name__ == "__main__":
    main()
