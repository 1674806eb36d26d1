"""Wake-word detection benchmark on the demo corpus (``make_demo_dataset --kind wakeword``), voices held out.

Synthesises the corpus ("hey marlo", confusable phrases, other words and noise from espeak-ng voices, plus long
background recordings of ordinary speech over room noise spoken by other voices), trains the detection task on the
voices that are not held out, and reports what the job computed. The background recordings have three roles
(``data.background_roles``): training recordings give negatives and noise; one validation recording chooses the
checkpoint and calibrates the threshold with the validation clips; the held-out recordings (at least an hour with the
defaults) are reported on. At the calibrated threshold, on audio the calibration never saw: the false-reject rate of
the held-out voices' wake phrases and the false accepts per hour over the held-out recordings. Also the training
time, the process's CPU time and the load average of the shared machine. Appends the numbers to the detection
section of docs/benchmarks.md.

    .venv/bin/python bench/bench_detection.py [--voices 48] [--holdout 12] [--backgrounds 6]
        [--background-minutes 50] [--preset balanced] [--set key=value ...] [--corpus DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import hashlib
from collections import Counter
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import audioml  # noqa: E402, F401  (before torch: sets OMP_WAIT_POLICY, see audioml/__init__.py)
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402

from bench.common import demo_corpus, machine_line, publish, timestamp, train_measured, voice_order  # noqa: E402
from training_app.demo_corpus import (  # noqa: E402
    CONFUSABLE_LABEL, WAKE_LABEL, generate_wakeword_corpus, read_background_listing,
)
from training_app.ml.config import TrainConfig, parse_override  # noqa: E402
from training_app.ml.data import BACKGROUND, ClipRecord  # noqa: E402
from training_app.ml.train import default_threads  # noqa: E402

SECTION = "## Detection"
INTRO = ("Produced by `bench/bench_detection.py`: the detection task trained on the wake-word demo corpus "
         "(`make_demo_dataset --kind wakeword`) with some voices held out entirely as the test set. The threshold is "
         "calibrated on validation audio; false rejects and false accepts per hour are measured at that threshold on "
         "audio the calibration never saw. Target (openWakeWord's): false rejects ≤ 5% at ≤ 0.5 false accepts per "
         "hour.")


def clip_records(rows: list[dict]) -> list[ClipRecord]:
    records = []
    for index, row in enumerate(rows):
        path = Path(row["path"])
        background = row.get("kind") == BACKGROUND
        content_hash = f"background-{index}" if background else hashlib.sha256(path.read_bytes()).hexdigest()
        records.append(ClipRecord(index, path, row["label"], content_hash, row["speaker"],
                                  soundfile.info(str(path)).duration, transcript=row.get("transcript", ""),
                                  kind=BACKGROUND if background else "clip"))
    return records


def model_name(metrics: dict) -> str:
    front_end = metrics.get("front_end")
    if not front_end:
        return "KeywordCNN with one sigmoid score"
    return (f"a small head on the frozen speech embedding ({front_end['embeddings_per_window']} embeddings "
            f"of {front_end['embedding_dim']} per window, one every {front_end['hop_seconds'] * 1000:.0f} ms), trained "
            f"on {front_end['training_windows']:,} augmented clip windows and {front_end['background_windows']:,} "
            "background windows")


def per_recording(held: dict) -> str:
    """The false accepts of each held-out recording (``: 3 + 2 + 13 in a, b, c``), when there are several."""
    parts = held.get("per_recording") or []
    if len(parts) < 2:
        return ""
    return (": " + " + ".join(str(part["false_accepts"]) for part in parts) + " in "
            + ", ".join(part["name"] for part in parts))


def false_accept_sources(held: dict, backgrounds: list[ClipRecord], window_seconds: float) -> dict | None:
    """Where the held-out false accepts fall, from the generator's listing of each recording
    (``background_NN.tsv``): on a sentence that holds an inserted confusable phrase ("hey margo", ...), on other
    speech, or in a pause. A false accept is placed by its highest-scoring window (``window_seconds`` around its
    peak time); a window that overlaps a sentence with a confusable phrase counts as that phrase's, one that
    overlaps only other sentences as other speech, one that overlaps none as a pause. None when a recording has
    no listing. Also the number of sentences with a confusable phrase in the held-out recordings (the chances)."""
    listings = {clip.path.name: read_background_listing(clip.path) for clip in backgrounds}
    counts = {"confusable": 0, "other speech": 0, "pause": 0}
    phrases: Counter = Counter()
    chances = 0
    for part in held.get("per_recording") or []:
        sentences = listings.get(part["name"])
        if sentences is None or len(part.get("events", ())) < part["false_accepts"]:
            return None  # no listing, or not every false accept listed (a job before this, or far too many)
        chances += sum(1 for sentence in sentences if sentence["confusable"])
        for _, _, peak, _ in part["events"]:
            low, high = peak - window_seconds / 2, peak + window_seconds / 2
            heard = [sentence for sentence in sentences if sentence["start"] < high and sentence["end"] > low]
            confusables = [sentence["confusable"] for sentence in heard if sentence["confusable"]]
            if confusables:
                counts["confusable"] += 1
                phrases[confusables[0]] += 1
            else:
                counts["other speech" if heard else "pause"] += 1
    return {**counts, "phrases": dict(phrases.most_common()), "chances": chances}


def sources_line(sources: dict | None) -> str:
    if sources is None:
        return "not known (no listing of what the recordings say)"
    phrases = ", ".join(f"\"{phrase}\" {count}" for phrase, count in sources["phrases"].items())
    return (f"{sources['confusable']} on a sentence holding a confusable phrase{f' ({phrases})' if phrases else ''}, "
            f"{sources['other speech']} on other speech, {sources['pause']} in pauses; the held-out recordings "
            f"hold {sources['chances']} sentences with a confusable phrase")


@contextmanager
def captured_scores():
    """The scores the job's evaluation computes, for re-scoring offline (``bench/detection_ensemble.py``): the last
    calibration's validation positives and streams, and the last DET curve's test positives and held-out streams.
    (Checkpoint choices during training calibrate too; the evaluation's calls come after them.)"""
    from training_app.ml import streaming

    captured: dict = {}
    calibrate, det = streaming.calibrate_threshold, streaming.det_curve

    def calibrate_threshold(positive_scores, streams, *args, **kwargs):
        captured["calibration"] = (np.asarray(positive_scores), list(streams))
        return calibrate(positive_scores, streams, *args, **kwargs)

    def det_curve(positive_scores, streams, *args, **kwargs):
        captured["held_out"] = (np.asarray(positive_scores), list(streams))
        return det(positive_scores, streams, *args, **kwargs)

    streaming.calibrate_threshold, streaming.det_curve = calibrate_threshold, det_curve
    try:
        yield captured
    finally:
        streaming.calibrate_threshold, streaming.det_curve = calibrate, det


def save_scores(captured: dict, names: list[str], path: Path) -> None:
    """``scores.npz``: per role (calibration, held_out) the positive clip scores and each stream's frame scores,
    hop, window and duration; ``names`` are the held-out recordings' names."""
    arrays: dict[str, np.ndarray] = {"held_out_names": np.array(names)}
    for role, (positives, streams) in captured.items():
        arrays[f"{role}_positives"] = positives
        arrays[f"{role}_geometry"] = np.array([[s.hop_seconds, s.window_seconds, s.duration_seconds] for s in streams])
        for index, stream in enumerate(streams):
            arrays[f"{role}_stream_{index}"] = stream.scores
    np.savez_compressed(path, **arrays)


def best_test_point(det: list[list[float]], budget: float) -> tuple[float, float] | None:
    """(FRR, FA/h) of the lowest-FRR point of the test audio's DET curve within the budget: what a threshold
    chosen on the test audio itself would give, to show how much the calibration gives away."""
    within = [(frr, fa) for fa, frr, _ in det if fa <= budget + 1e-9]
    return min(within) if within else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", type=int, default=48)
    parser.add_argument("--holdout", type=int, default=12, help="voices held out as the test set")
    parser.add_argument("--backgrounds", type=int, default=6,
                        help="long background recordings (every other one is held out, one validates)")
    parser.add_argument("--background-minutes", type=float, default=50.0)
    parser.add_argument("--confusable-takes", type=int, default=2,
                        help="confusable phrases each voice says (at most 8; a reused corpus keeps its own)")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--set", action="append", default=[], dest="set_values", metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=None, help="keep the corpus here and reuse it next time")
    parser.add_argument("--note", default="", help="a line written above the figures (what differs in this run)")
    parser.add_argument("--keep-model", type=Path, default=None, help="copy the trained model's folder here")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    overrides = {name: parse_override(name, value) for name, value in (item.split("=", 1) for item in args.set_values)}

    def generate(folder: Path) -> None:
        generate_wakeword_corpus(folder, n_voices=args.voices, seed=args.seed, n_backgrounds=args.backgrounds,
                                 background_minutes=args.background_minutes,
                                 confusable_takes=args.confusable_takes)

    with tempfile.TemporaryDirectory(prefix="bench-detection-") as tmp:
        rows, synthesis_seconds, reused = demo_corpus(args.corpus, generate, Path(tmp))
        clips = clip_records(rows)
        held_out = voice_order(rows)[-args.holdout:]
        cfg = TrainConfig.from_dict(args.preset, {"task": "detection", "positive_label": WAKE_LABEL,
                                                  "holdout_speakers": held_out, "test_fraction": 0.0,
                                                  "seed": args.seed, **overrides})

        with captured_scores() as captured:
            result, used = train_measured(cfg, clips, Path(tmp), args.threads, ("val_auc", "AUC"),
                                          ("val_frr", "false rejects within the budget"))
        if args.keep_model:
            shutil.copytree(result.out_dir, args.keep_model, dirs_exist_ok=True)
            save_scores(captured, [part["name"] for part in result.metrics["held_out"].get("per_recording") or []],
                        args.keep_model / "scores.npz")
    metrics = result.metrics
    calibration, held, test = metrics["calibration"], metrics["held_out"], metrics["test"]
    backgrounds = [clip for clip in clips if clip.kind == BACKGROUND]
    trainable = [clip for clip in clips if clip.kind != BACKGROUND]
    budget = cfg.target_fa_per_hour
    oracle = best_test_point(metrics["det"], budget)
    sources = false_accept_sources(held, backgrounds, cfg.clip_seconds)
    confusable_clips = sum(1 for clip in trainable if clip.label == CONFUSABLE_LABEL)
    met = held["false_reject_rate"] <= 0.05 and held["false_accepts_per_hour"] <= budget
    corpus_note = "reused from an earlier run" if reused else f"synthesised in {synthesis_seconds:.0f} s"
    timings = metrics["timings"]
    entry = "\n".join([
        f"### {timestamp()}",
        "",
        *([args.note, ""] if args.note else []),
        f"- Machine: {machine_line(f'torch {torch.__version__} (CPU, {args.threads} training threads)')}.",
        f"- Run: {used.line()}.",
        f"- Data ({corpus_note}): {len(trainable)} clips of {max(clip.duration for clip in trainable):g} s (the model "
        f"sees {cfg.clip_seconds:g} s windows) from {args.voices} espeak-ng voices "
        f"({sum(1 for clip in trainable if clip.label == WAKE_LABEL)} of \"hey marlo\", {confusable_clips} "
        f"confusable phrases ({confusable_clips // args.voices} per voice), the rest other words and noise) and {len(backgrounds)} background recordings of "
        f"{sum(clip.duration for clip in backgrounds) / len(backgrounds) / 60:.0f} min by other voices. Test: the "
        f"{metrics['split']['test']} clips of {args.holdout} held-out voices ({', '.join(held_out)}); "
        f"{metrics['split']['train']} training and {metrics['split']['val']} validation clips from the others.",
        f"- Model: {model_name(metrics)}, preset `{args.preset}`"
        f"{' with ' + ', '.join(args.set_values) if args.set_values else ''}, {metrics['n_parameters']:,} "
        f"{'trained ' if metrics.get('front_end') else ''}parameters; "
        f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']}"
        + (f" (the weights of epochs {', '.join(map(str, metrics['averaged_epochs']))} averaged)"
           if metrics.get("averaged_epochs") else "") + ".",
        "",
        "| Figure | Audio | Value |",
        "| --- | --- | ---: |",
        f"| calibrated threshold (≤ {budget:g} false accepts per hour) | {calibration['positives']} validation "
        f"positives; {calibration['hours'] * 60:.0f} min of {calibration['source']} | {calibration['threshold']:.3f} |",
        f"| false rejects / false accepts per hour on the calibration audio | same | "
        f"{calibration['false_reject_rate']:.1%} / {calibration['false_accepts_per_hour']:.2f} |",
        f"| **false rejects at the calibrated threshold** | {held['positives']} \"hey marlo\" clips of the held-out "
        f"voices | **{held['false_reject_rate']:.1%}** |",
        f"| **false accepts per hour at the calibrated threshold** | {held['hours'] * 60:.0f} min of "
        f"{held['source']} | "
        f"**{held['false_accepts_per_hour']:.2f}** ({held['false_accepts']} false accepts{per_recording(held)}) |",
        f"| where those false accepts fall (the generator's listing of the recordings) | same | "
        f"{sources_line(sources)} |",
        f"| per-clip false accepts (confusable phrases, other words) | {test['negatives']} negative test clips | "
        f"{test['false_accept_rate']:.1%} |",
        f"| ROC AUC of the clip scores (baseline: {metrics['baseline']['description']}) | test clips | "
        f"{metrics['roc_auc']:.4f} ({metrics['baseline']['roc_auc']:.4f}) |",
        f"| for comparison: best test DET point within the budget (threshold chosen on the test audio) | test | "
        + (f"{oracle[0]:.1%} / {oracle[1]:.2f} |" if oracle else "none |"),
        f"| training loop | | {metrics['training_seconds'] / 60:.1f} min ({metrics['mean_epoch_seconds']:.1f} s per "
        f"epoch) |",
        f"| evaluation (scoring {(calibration['hours'] + held['hours']) * 60:.0f} min of stream and the clips) | | "
        f"{timings.get('evaluating_seconds', 0) / 60:.1f} min |",
        f"| whole job (features, training, evaluation, export) | | {result.total_seconds / 60:.1f} min |",
        "",
        f"Target false rejects ≤ 5% at ≤ {budget:g} false accepts per hour on the held-out audio: "
        f"{'met' if met else 'NOT met'}.",
        "",
    ])
    publish(SECTION, INTRO, entry, not args.no_write)


if __name__ == "__main__":
    main()
