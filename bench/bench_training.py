"""Training benchmark on the synthetic demo corpus, with some voices held out entirely as the test set.

Runs the default preset twice on the same data (cold, then warm feature cache), times one epoch with
features computed on the fly (decode + log-mel every epoch, as without a cache), and appends the
numbers with a machine description to the training section of docs/benchmarks.md.

    .venv/bin/python bench/bench_training.py [--clips-per-word 22] [--holdout 4] [--no-write]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import audioml  # noqa: E402, F401  (before torch: sets OMP_WAIT_POLICY, see audioml/__init__.py)
import torch  # noqa: E402

from training_app.demo_corpus import generate_demo_corpus  # noqa: E402
from training_app.ml.audio import load_waveform  # noqa: E402
from training_app.ml.augment import Augmenter, gaussian_noise_powers, stack_frames  # noqa: E402
from training_app.ml.config import ConfigError, TrainConfig, parse_override  # noqa: E402
from training_app.ml.features import FeatureCache, LogMelFrontend  # noqa: E402
from training_app.ml.model import KeywordCNN  # noqa: E402
from training_app.ml.split import split_clips  # noqa: E402
from training_app.ml.train import ClipRecord, Runtime, TrainResult, default_threads, train  # noqa: E402

from bench.common import BENCHMARKS, append_entry, machine_facts, timestamp  # noqa: E402

SECTION = "## Training"


def machine_description() -> dict[str, str]:
    return {
        **machine_facts(),
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
    }


def clip_records(rows: list[dict]) -> list[ClipRecord]:
    records = []
    for index, row in enumerate(rows):
        content_hash = hashlib.sha256(Path(row["path"]).read_bytes()).hexdigest()
        records.append(ClipRecord(index, row["path"], row["label"], content_hash, row["speaker"], 1.0))
    return records


def run_job(cfg: TrainConfig, clips: list[ClipRecord], out_dir: Path, cache_dir: Path, threads: int) -> TrainResult:
    def on_progress(progress) -> None:
        if progress.epoch:
            epoch = progress.epoch
            print(f"  epoch {epoch['epoch']:3d}  train {epoch['train_loss']:.3f}  val {epoch['val_loss']:.3f}  "
                  f"acc {epoch['val_accuracy']:.3f}  {epoch['seconds']:.2f} s", flush=True)

    runtime = Runtime(cache_dir, {"clips": len(clips)}, lambda level, message: print(f"  [{level}] {message}"),
                      threads)
    return train(cfg, clips, out_dir, on_progress, lambda: False, runtime)


def epoch_timings(
    cfg: TrainConfig, clips: list[ClipRecord], train_indices: list[int], cache_dir: Path, threads: int,
    repeats: int = 3,
) -> dict[str, float]:
    """Median seconds of one training epoch fed from cached features vs decoding audio on the fly.

    Both variants run the trainer's augmentation and a real forward/backward pass of the same network,
    alternating so that load from other processes affects them alike. Also times the data path alone:
    decoding + log-mel of every training clip vs reading it from the on-disk feature cache.
    """
    torch.set_num_threads(threads)
    features = cfg.features()
    frontend = LogMelFrontend(features)
    cache = FeatureCache(cache_dir, features)
    generator = torch.Generator().manual_seed(cfg.seed)
    labels = sorted({clip.label for clip in clips})
    augmenter = Augmenter(cfg.time_shift, cfg.noise, cfg.spec_augment,
                          gaussian_noise_powers(frontend, features, 8, generator), generator, warp=cfg.warp)
    network = KeywordCNN(len(labels), cfg.channels, cfg.dropout)
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss()
    train_clips = [clips[i] for i in train_indices]
    in_memory = {clip.content_hash: cache.load(clip.content_hash) for clip in train_clips}

    def decode(clip: ClipRecord) -> torch.Tensor:
        with torch.no_grad():
            return frontend.mel_power(load_waveform(clip.path, features.sample_rate).unsqueeze(0))[0]

    def epoch(power_of) -> float:
        network.train()
        started = time.perf_counter()
        order = torch.randperm(len(train_clips), generator=generator).tolist()
        for start in range(0, len(order), cfg.batch_size):
            batch_clips = [train_clips[i] for i in order[start : start + cfg.batch_size]]
            batch = stack_frames([power_of(clip) for clip in batch_clips], features.n_frames, "random", generator)
            inputs = augmenter.log_mel(frontend.normalize(augmenter.power(batch)))
            targets = torch.tensor([labels.index(clip.label) for clip in batch_clips])
            loss = loss_fn(network(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return time.perf_counter() - started

    def data_pass(power_of) -> float:
        started = time.perf_counter()
        for clip in train_clips:
            power_of(clip)
        return time.perf_counter() - started

    samples: dict[str, list[float]] = {"cached": [], "on_the_fly": [], "read_cache": [], "decode": []}
    for _ in range(repeats):
        samples["cached"].append(epoch(lambda clip: in_memory[clip.content_hash]))
        samples["on_the_fly"].append(epoch(decode))
        samples["read_cache"].append(data_pass(lambda clip: cache.load(clip.content_hash)))
        samples["decode"].append(data_pass(decode))
    return {name: statistics.median(values) for name, values in samples.items()}


def report(results: dict, machine: dict[str, str]) -> str:
    cold: TrainResult = results["cold"]
    warm: TrainResult = results["warm"]
    m = cold.metrics
    split = m["split"]
    cold_features = m["timings"]["features_seconds"]
    warm_features = warm.metrics["timings"]["features_seconds"]
    epochs = results["epochs"]
    n_train = split["train"]
    lines = [
        f"### {timestamp()}: preset `{results['preset']}`, "
        f"{len(results['clips'])} clips",
        "",
        f"- Machine: {machine['nproc']} CPU cores ({machine['cpu']}), {machine['memory']} RAM, "
        f"device {machine['device']}, Python {machine['python']}, torch {machine['torch']}, "
        f"{results['threads']} torch threads (OMP_WAIT_POLICY={machine['omp_wait_policy']}); "
        f"load average {results['load_before']:.1f} before and "
        f"{results['load_after']:.1f} after the run (the machine is shared with other work)",
        f"- Corpus: {results['words']} words + noise, {results['voices']} espeak-ng voices "
        f"({results['corpus_seconds']:.1f} s to synthesise); held-out test voices: "
        f"{', '.join(results['holdout'])}",
        f"- Split: {split['train']} train / {split['val']} validation / {split['test']} test clips; "
        f"test speakers {len(split['speakers']['test'])}, none seen in training",
        f"- Settings: {results['overrides']}",
        "",
        "| measure | value |",
        "|---|---|",
        f"| test accuracy (network) | {m['test']['accuracy']:.1%} |",
        f"| test macro F1 (network) | {m['test']['macro_f1']:.3f} |",
        f"| test accuracy (baseline: {m['baseline']['description']}) | {m['baseline']['accuracy']:.1%} |",
        f"| test macro F1 (baseline) | {m['baseline']['macro_f1']:.3f} |",
        f"| total job time, cold cache (features, training, evaluation, export) | {cold.total_seconds:.1f} s |",
        f"| total job time, warm cache | {warm.total_seconds:.1f} s |",
        f"| training loop | {m['training_seconds']:.1f} s for {m['epochs_run']} epochs "
        f"(best epoch {m['best_epoch']}{', stopped early' if m['stopped_early'] else ''}) |",
        f"| export (weights, .pt2 with check, ONNX) | {cold.export_seconds:.1f} s |",
        f"| feature phase, cold cache ({m['feature_cache']['misses']} clips decoded) | {cold_features:.2f} s |",
        f"| feature phase, warm cache ({warm.metrics['feature_cache']['hits']} clips from cache) | "
        f"{warm_features:.2f} s |",
        f"| epoch in the job (mean over {m['epochs_run']} epochs, including validation) | "
        f"{m['mean_epoch_seconds']:.2f} s |",
        f"| training epoch fed from cached features (median of 3) | {epochs['cached']:.2f} s |",
        f"| training epoch decoding audio + log-mel on the fly (median of 3) | {epochs['on_the_fly']:.2f} s |",
        f"| data path per epoch: decode + log-mel of {n_train} clips | {epochs['decode']:.3f} s |",
        f"| data path per epoch: read {n_train} clips from the feature cache | {epochs['read_cache']:.3f} s |",
        f"| speed-up of the cache: whole epoch / data path / feature phase | "
        f"{epochs['on_the_fly'] / epochs['cached']:.1f}x / {epochs['decode'] / epochs['read_cache']:.1f}x / "
        f"{cold_features / max(warm_features, 1e-9):.0f}x |",
        "",
        *targets(m, cold, epochs),
        "",
    ]
    return "\n".join(lines)


def targets(metrics: dict, cold: TrainResult, epochs: dict[str, float]) -> list[str]:
    """The issue's targets, each judged from this run's numbers."""
    accuracy, baseline = metrics["test"]["accuracy"], metrics["baseline"]["accuracy"]
    whole, data = epochs["on_the_fly"] / epochs["cached"], epochs["decode"] / epochs["read_cache"]

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    return [
        f"Targets: test accuracy on held-out voices >= 95%: {verdict(accuracy >= 0.95)} ({accuracy:.1%}); "
        f"clearly above the baseline: {verdict(accuracy - baseline >= 0.1)} (+{(accuracy - baseline) * 100:.0f} "
        f"points); about 200 clips in under 3 minutes: {verdict(cold.total_seconds < 180)} "
        f"({cold.total_seconds:.0f} s); cached epochs several times faster: "
        f"{verdict(whole >= 3)} for whole epochs ({whole:.1f}x: an epoch of this CNN is compute-bound), "
        f"{verdict(data >= 3)} for the data path ({data:.1f}x).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips-per-word", type=int, default=22, help="voices in the corpus (one take each)")
    parser.add_argument("--holdout", type=int, default=4, help="voices held out entirely for the test set")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        rows = generate_demo_corpus(work / "corpus", n_voices=args.clips_per_word, seed=args.seed)
        corpus_seconds = time.perf_counter() - started
        clips = clip_records(rows)
        voices = sorted({clip.speaker for clip in clips if clip.speaker})
        # Voices are in a seeded, interleaved order: hold out the last ones generated.
        voice_order = list(dict.fromkeys(clip.speaker for clip in clips if clip.speaker))
        holdout = voice_order[-args.holdout:] if args.holdout else []
        overrides = {"holdout_speakers": holdout, "val_fraction": 0.1, "test_fraction": 0.1, "seed": args.seed}
        for item in args.set:
            key, _, value = item.partition("=")
            overrides[key] = parse_override(key, value)
        try:
            cfg = TrainConfig.from_dict(args.preset, overrides)
        except ConfigError as error:
            parser.error(str(error))
        shown = {key: value for key, value in overrides.items() if key != "holdout_speakers"}

        print(f"corpus: {len(clips)} clips, {len(voices)} voices, {corpus_seconds:.1f} s; holdout {holdout}")
        print("cold cache job:")
        cold = run_job(cfg, clips, work / "job-cold", work / "cache", args.threads)
        print("warm cache job:")
        warm = run_job(cfg, clips, work / "job-warm", work / "cache", args.threads)
        print("epoch timings, cached vs on the fly:")
        train_indices = split_clips(clips, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.holdout_speakers).train
        epochs = epoch_timings(cfg, clips, train_indices, work / "cache", args.threads)

    machine = machine_description()
    entry = report(
        {
            "cold": cold, "warm": warm, "epochs": epochs, "clips": clips, "preset": args.preset,
            "words": len({clip.label for clip in clips}) - 1, "voices": len(voices), "holdout": holdout,
            "corpus_seconds": corpus_seconds, "threads": args.threads, "overrides": shown,
            "load_before": load_before, "load_after": os.getloadavg()[0],
        },
        machine,
    )
    print()
    print(entry)
    if not args.no_write:
        append_entry(SECTION, (
            "Produced by `bench/bench_training.py` (demo corpus of synthetic espeak-ng voices, some voices held out\n"
            "entirely for the test set). \"On the fly\" decodes every training clip and computes its log-mel inside\n"
            "the epoch, which is what each epoch would cost without the feature cache."
        ), entry)
        print(f"appended to {BENCHMARKS}")


if __name__ == "__main__":
    main()
