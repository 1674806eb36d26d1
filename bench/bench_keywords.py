"""Keyword-recipe quality benchmark: the default preset on the hard keyword corpus and on the easy one.

Hard (``make_demo_dataset --kind hard``): five keyword pairs a sound apart, an ``unknown`` class whose
held-out voices say words no training voice says, ``noise``, speech at 8-25 dB SNR. Easy: the ten command
words plus noise (``--kind keywords``). Some voices are held out entirely (``holdout_speakers``): the test
split is speaker-disjoint and never used for model selection. For each corpus the script trains the preset
once and reports accuracy on the test split and on the held-out voices alone, beside the shallow baseline,
the errors per class, the confusion pairs and, for the hard corpus, which unseen unknown words were taken
for keywords. Times: wall clock, the process's CPU time (user + sys, all threads) and the load average; on
this shared machine CPU seconds / threads estimates the wall time on a quiet one.

    .venv/bin/python bench/bench_keywords.py [--corpus hard,easy] [--preset balanced] [--set key=value]
        [--hard-voices 48] [--hard-holdout 12] [--easy-voices 30] [--easy-holdout 6] [--label before] [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import audioml  # noqa: E402, F401  (before torch: sets OMP_WAIT_POLICY, see audioml/__init__.py)
import torch  # noqa: E402

from bench.common import append_entry, machine_facts, timestamp  # noqa: E402
from training_app.demo_corpus import (  # noqa: E402
    UNKNOWN_LABEL,
    available_voices,
    generate_demo_corpus,
    generate_hard_corpus,
    hard_holdout_voices,
)
from training_app.ml.artifacts import TORCH_EXPORT_FILE  # noqa: E402
from training_app.ml.audio import fit_length, load_waveform  # noqa: E402
from training_app.ml.config import ConfigError, TrainConfig, parse_override  # noqa: E402
from training_app.ml.tasks import classification  # noqa: E402
from training_app.ml.train import ClipRecord, Runtime, train  # noqa: E402

SECTION = "## Keyword recipe quality"
INTRO = (
    "Produced by `bench/bench_keywords.py`: the default preset trained on the hard keyword corpus\n"
    "(`make_demo_dataset --kind hard`) and on the easy one (`--kind keywords`), some voices held out entirely\n"
    "for the test split. \"Held-out voices\" counts only the clips of those voices (on the hard corpus their\n"
    "unknown words are never heard in training); \"test\" adds the test split's noise clips and the few other\n"
    "voices the split put there. Accuracy counts the answers a prediction gives (with the open-set rule, when on, an\n"
    "unsure keyword answer is `unknown`); \"top label only\" counts the top scores. CPU time is the training\n"
    "process's user + sys time over all threads; on this shared 2-core machine wall times are inflated, so CPU\n"
    "seconds / 2 estimates the wall time on a quiet machine."
)
CORPUS_ROOT = Path(os.environ.get("AUDIOML_BENCH_CORPORA", Path(tempfile.gettempdir()) / "audioml-bench-corpora"))


def corpus(kind: str, voices: int, holdout: int, seed: int) -> tuple[list[ClipRecord], list[str], dict]:
    """The corpus's clips (synthesised once into CORPUS_ROOT, then reused), its held-out voices and words."""
    folder = CORPUS_ROOT / f"{kind}-v{voices}-h{holdout}-s{seed}"
    listing = folder / "rows.json"
    if not listing.exists():
        started = time.perf_counter()
        if kind == "hard":
            rows = generate_hard_corpus(folder, n_voices=voices, n_holdout=holdout, seed=seed)
        else:
            rows = generate_demo_corpus(folder, n_voices=voices, seed=seed)
        print(f"synthesised {len(rows)} {kind} clips in {time.perf_counter() - started:.0f} s", flush=True)
        listing.write_text(json.dumps([{**row, "path": str(row["path"])} for row in rows]))
    rows = json.loads(listing.read_text())
    clips = [
        ClipRecord(index, Path(row["path"]), row["label"], hashlib.sha256(Path(row["path"]).read_bytes()).hexdigest(),
                   row["speaker"], 1.0)
        for index, row in enumerate(rows)
    ]
    if kind == "hard":
        held = hard_holdout_voices(voices, holdout, seed)
    else:
        held = [voice.speaker for voice in available_voices(seed)[voices - holdout : voices]] if holdout else []
    words = {index: row.get("transcript") or row["label"] for index, row in enumerate(rows)}
    return clips, held, words


def predict(out_dir: Path, clips: list[ClipRecord], samples: int) -> tuple[list[int], list[int]]:
    """(answered, top) label indices for ``clips``: the exported model (model.pt2, what the registry serves) scores
    each clip and the task shapes the answer as a prediction does (an unsure keyword answer becomes unknown when the
    version's open-set rule is on); ``top`` is the top score's label."""
    model = torch.export.load(out_dir / TORCH_EXPORT_FILE).module()
    config = json.loads((out_dir / "config.json").read_text())
    labels = config["labels"]
    context = {"labels": labels, "prediction": config.get("prediction") or {}}
    waves = torch.stack([fit_length(load_waveform(clip.path, 16000), samples, "center") for clip in clips])
    with torch.no_grad():
        scores = [row.numpy() for chunk in waves.split(256) for row in model(chunk)]
    answers = [classification.shape_prediction(row[None, :], [0.0], context) for row in scores]
    return [labels.index(answer["label"]) for answer in answers], [int(row.argmax()) for row in scores]


def run(kind: str, args, overrides_text: list[str]) -> dict:
    voices, holdout = (args.hard_voices, args.hard_holdout) if kind == "hard" else (args.easy_voices, args.easy_holdout)
    clips, held, words = corpus(kind, voices, holdout, args.seed)
    overrides = {"holdout_speakers": held, "val_fraction": 0.15, "test_fraction": 0.1, "seed": args.seed}
    for item in overrides_text:
        key, _, value = item.partition("=")
        overrides[key] = parse_override(key, value)
    cfg = TrainConfig.from_dict(args.preset, overrides)
    print(f"{kind}: {len(clips)} clips, {voices} voices, held out {len(held)}; preset {args.preset} "
          f"{ {k: v for k, v in overrides.items() if k != 'holdout_speakers'} }", flush=True)

    def on_progress(progress) -> None:
        if progress.epoch and args.verbose:
            e = progress.epoch
            print(f"  epoch {e['epoch']:3d} train {e['train_loss']:.3f} val {e['val_loss']:.3f} "
                  f"acc {e['val_accuracy']:.3f} {e['seconds']:.2f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-keywords-") as tmp:
        work = Path(tmp)
        runtime = Runtime(work / "cache", None, lambda level, message: print(f"  [{level}] {message}", flush=True),
                          args.threads)
        load_before = os.getloadavg()
        wall, cpu = time.perf_counter(), time.process_time()
        result = train(cfg, clips, work / "job", on_progress, lambda: False, runtime)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        load_after = os.getloadavg()
        metrics = result.metrics
        test_index = _test_indices(cfg, clips)
        predicted, top = predict(work / "job", [clips[i] for i in test_index], cfg.features().clip_samples)
    labels = result.labels
    truth = [labels.index(clips[i].label) for i in test_index]
    pairs = Counter()
    errors = Counter()
    support = Counter()
    unknown_taken = Counter()
    held_right = held_total = 0
    for index, t, p in zip(test_index, truth, predicted, strict=True):
        support[labels[t]] += 1
        if clips[index].speaker in held:
            held_total += 1
            held_right += t == p
        if t != p:
            errors[labels[t]] += 1
            pairs[(labels[t], labels[p])] += 1
            if labels[t] == UNKNOWN_LABEL:
                unknown_taken[f"{words[index]}→{labels[p]}"] += 1
    test_accuracy = sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)
    top_accuracy = sum(t == p for t, p in zip(truth, top, strict=True)) / len(truth)
    held_mask = [clips[index].speaker in held for index in test_index]
    held_top = [t == p for t, p, h in zip(truth, top, held_mask, strict=True) if h]
    open_set = metrics.get("open_set") or {}
    return {
        "kind": kind, "clips": len(clips), "voices": voices, "holdout": held, "preset": args.preset,
        "settings": {k: v for k, v in overrides.items() if k != "holdout_speakers"},
        "split": {name: metrics["split"][name] for name in ("train", "val", "test")},
        "test_accuracy": test_accuracy, "job_test_accuracy": metrics["test"]["accuracy"],
        "held_accuracy": held_right / held_total if held_total else None, "held_n": held_total,
        "top_accuracy": top_accuracy, "held_top_accuracy": sum(held_top) / len(held_top) if held_top else None,
        "open_set_rule": bool(open_set.get("rule")), "unsure_threshold": open_set.get("threshold"),
        "unsure_answers": sum(p != q for p, q in zip(predicted, top, strict=True)),
        "val_accuracy": metrics["val"]["accuracy"], "baseline_accuracy": metrics["baseline"]["accuracy"],
        "errors": dict(errors), "support": dict(support), "pairs": pairs.most_common(8),
        "unknown_taken": unknown_taken.most_common(10),
        "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
        "registered": metrics.get("registered_model") or "the checkpoint with the lowest validation loss",
        "n_parameters": metrics["n_parameters"], "training_seconds": metrics["training_seconds"],
        "wall_seconds": wall, "cpu_seconds": cpu, "threads": torch.get_num_threads() if not args.threads
        else args.threads, "load_before": load_before, "load_after": load_after,
    }


def _test_indices(cfg: TrainConfig, clips: list[ClipRecord]) -> list[int]:
    from training_app.ml.split import split_for_task

    return split_for_task(clips, cfg)[0].test


def report(results: list[dict], label: str) -> str:
    facts = machine_facts()
    first = results[0]
    lines = [
        f"### {timestamp()}: {label}",
        "",
        f"- Machine: {facts['nproc']} CPU cores ({facts['cpu']}), {facts['memory']} RAM, Python {facts['python']}, "
        f"torch {torch.__version__}, {first['threads']} torch threads; shared with other work (load averages below)",
        f"- Preset `{first['preset']}`; settings {first['settings']}",
        "",
        "| corpus | clips (train/val/test) | held-out voices | test acc. | held-out voices acc. | top label only "
        "(test / held-out) | baseline (test) | val acc. | epochs (best) | wall | CPU (user+sys) "
        "| quiet estimate (CPU/2) | load 1-min before → after |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        split = r["split"]
        lines.append(
            f"| {r['kind']} | {r['clips']} ({split['train']}/{split['val']}/{split['test']}) | {len(r['holdout'])} of "
            f"{r['voices']} | {r['test_accuracy']:.1%} | {_pct(r['held_accuracy'])} (n={r['held_n']}) | "
            f"{r['top_accuracy']:.1%} / {_pct(r['held_top_accuracy'])} | {r['baseline_accuracy']:.1%} | "
            f"{r['val_accuracy']:.1%} | {r['epochs_run']} ({r['best_epoch']}) | "
            f"{r['wall_seconds']:.0f} s | {r['cpu_seconds']:.0f} s | {r['cpu_seconds'] / 2:.0f} s | "
            f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f} |"
        )
    lines.append("")
    for r in results:
        per_class = ", ".join(f"{name} {r['errors'].get(name, 0)}/{n}" for name, n in sorted(r["support"].items()))
        lines.append(f"- {r['kind']}: errors per class (wrong/test clips): {per_class}")
        if r["pairs"]:
            lines.append("  - confusions (truth → predicted ×n): "
                         + ", ".join(f"{t} → {p} ×{n}" for (t, p), n in r["pairs"]))
        if r["unknown_taken"]:
            lines.append("  - unseen unknown words taken for another class: "
                         + ", ".join(f"{w} ×{n}" for w, n in r["unknown_taken"]))
        if r["open_set_rule"]:
            lines.append(f"  - open-set rule on: keyword answers under the unsure threshold "
                         f"{r['unsure_threshold']:.3f} (calibrated on validation) are answered `unknown`; "
                         f"{r['unsure_answers']} test answers changed")
        lines.append(f"  - registered model: {r['registered']}; {r['n_parameters']:,} parameters")
    lines.append("")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="hard,easy", help="comma-separated: hard, easy")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--hard-voices", type=int, default=48)
    parser.add_argument("--hard-holdout", type=int, default=12)
    parser.add_argument("--easy-voices", type=int, default=30)
    parser.add_argument("--easy-holdout", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--label", default="", help="heading of the entry (e.g. before, after)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--verbose", action="store_true", help="print every epoch")
    parser.add_argument("--write", action="store_true", help="append the entry to docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        results = [run(kind.strip(), args, args.set) for kind in args.corpus.split(",") if kind.strip()]
    except ConfigError as error:
        parser.error(str(error))
    entry = report(results, args.label or f"preset {args.preset}")
    print()
    print(entry)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if args.write:
        append_entry(SECTION, INTRO, entry)


if __name__ == "__main__":
    main()
