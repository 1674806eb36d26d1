"""Regression benchmark on the speech-quality demo corpus (``make_demo_dataset --kind scores``), voices held out.

Synthesises the corpus (each spoken word buried in noise at a known SNR, scored 0-1 by it), trains the regression
task with the given preset on the other voices, and reports on the held-out voices the network's Spearman and
Pearson correlation, RMSE and MAE beside the ridge baseline on log-mel statistics and the predict-the-mean
reference, with the training time, the process's CPU time and the load average of the shared machine. Appends the
numbers to the regression section of docs/benchmarks.md.

    .venv/bin/python bench/bench_regression.py [--voices 30] [--holdout 6] [--preset balanced] [--set key=value ...]
        [--corpus DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import audioml  # noqa: E402, F401  (before torch: sets OMP_WAIT_POLICY, see audioml/__init__.py)
import soundfile  # noqa: E402
import torch  # noqa: E402

from bench.common import demo_corpus, machine_line, publish, timestamp, train_measured, voice_order  # noqa: E402
from training_app.demo_corpus import SCORE_SNR_RANGE_DB, generate_scores_corpus  # noqa: E402
from training_app.ml.config import TrainConfig, parse_override  # noqa: E402
from training_app.ml.data import ClipRecord  # noqa: E402
from training_app.ml.train import default_threads  # noqa: E402

SECTION = "## Regression"
INTRO = ("Produced by `bench/bench_regression.py`: the regression task trained on the speech-quality demo corpus "
         "(`make_demo_dataset --kind scores`: spoken words buried in noise at an SNR drawn from "
         f"{SCORE_SNR_RANGE_DB[0]:g} to {SCORE_SNR_RANGE_DB[1]:g} dB, scored 0-1 by it) with some voices held out "
         "entirely as the test set. Target: Spearman ≥ 0.9 on the unseen voices.")


def clip_records(rows: list[dict]) -> list[ClipRecord]:
    return [ClipRecord(index, row["path"], row["label"], hashlib.sha256(Path(row["path"]).read_bytes()).hexdigest(),
                       row["speaker"], soundfile.info(str(row["path"])).duration, score=row["score"],
                       transcript=row.get("transcript", ""))
            for index, row in enumerate(rows)]


def figures_row(name: str, figures: dict) -> str:
    def number(key: str) -> str:
        value = figures.get(key)
        return "—" if value is None else f"{value:.3f}"

    return f"| {name} | {number('spearman')} | {number('pearson')} | {number('rmse')} | {number('mae')} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", type=int, default=30)
    parser.add_argument("--holdout", type=int, default=6, help="voices held out as the test set")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--set", action="append", default=[], dest="set_values", metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=None, help="keep the corpus here and reuse it next time")
    parser.add_argument("--note", default="", help="a line written above the figures (what differs in this run)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    overrides = {name: parse_override(name, value) for name, value in (item.split("=", 1) for item in args.set_values)}

    with tempfile.TemporaryDirectory(prefix="bench-regression-") as tmp:
        rows, synthesis_seconds, reused = demo_corpus(
            args.corpus, lambda folder: generate_scores_corpus(folder, n_voices=args.voices, seed=args.seed), Path(tmp))
        clips = clip_records(rows)
        held_out = voice_order(rows)[-args.holdout:]
        cfg = TrainConfig.from_dict(args.preset, {"task": "regression", "holdout_speakers": held_out,
                                                  "test_fraction": 0.0, "seed": args.seed, **overrides})

        result, used = train_measured(cfg, clips, Path(tmp), args.threads, ("val_mae", "MAE"))
    metrics = result.metrics
    test = metrics["test"]
    spearman = test["spearman"]
    corpus_note = ("reused from an earlier run" if reused else f"synthesised in {synthesis_seconds:.0f} s")
    entry = "\n".join([
        f"### {timestamp()}",
        "",
        *([args.note, ""] if args.note else []),
        f"- Machine: {machine_line(f'torch {torch.__version__} (CPU, {args.threads} training threads)')}.",
        f"- Run: {used.line()}.",
        f"- Data: {len(clips)} one-second clips from {args.voices} espeak-ng voices ({corpus_note}); test: the "
        f"{metrics['split']['test']} clips of {args.holdout} held-out voices ({', '.join(held_out)}); "
        f"{metrics['split']['train']} training and {metrics['split']['val']} validation clips from the others.",
        f"- Model: KeywordCNN with a sigmoid score head, preset `{args.preset}`"
        f"{' with ' + ', '.join(args.set_values) if args.set_values else ''}, {metrics['n_parameters']:,} parameters; "
        f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} (lowest validation MSE).",
        "",
        "| On the held-out voices | Spearman | Pearson | RMSE | MAE |",
        "| --- | ---: | ---: | ---: | ---: |",
        figures_row("network", test),
        figures_row(f"ridge baseline ({metrics['baseline']['description']})", metrics["baseline"]),
        figures_row("predict the training mean", metrics["mean_reference"]),
        "",
        f"Training loop {metrics['training_seconds']:.0f} s ({metrics['mean_epoch_seconds']:.1f} s per epoch); whole "
        f"job (features, training, evaluation, export) {result.total_seconds:.0f} s. Target Spearman ≥ 0.9: "
        f"{'met' if spearman is not None and spearman >= 0.9 else 'NOT met'} ({spearman:.3f}).",
        "",
    ])
    publish(SECTION, INTRO, entry, not args.no_write)


if __name__ == "__main__":
    main()
