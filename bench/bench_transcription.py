"""Transcription benchmark on the spoken-commands demo corpus, with some voices held out as the test set.

Synthesises the corpus (``make_demo_dataset --kind commands``'s generator), trains the transcription task
with the given preset, and reports CER and WER on the unseen voices beside the most-frequent-transcript
reference (greedy and word-list beam decoding), the training time, and the real-time factor of inference through
the exported ``model.pt2`` (each test clip decoded as the version's predictions do, one at a time, one thread). Appends the numbers to the
transcription section of docs/benchmarks.md.

    .venv/bin/python bench/bench_transcription.py [--voices 20] [--phrases 30] [--holdout 4] [--preset balanced]
        [--set key=value ...] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import audioml  # noqa: E402, F401  (before torch: sets OMP_WAIT_POLICY, see audioml/__init__.py)
import soundfile  # noqa: E402
import torch  # noqa: E402

from bench.common import load_note, machine_line, publish, timestamp  # noqa: E402
from training_app.demo_commands import generate_command_corpus  # noqa: E402
from training_app.ml.audio import load_waveform  # noqa: E402
from training_app.ml.config import TrainConfig, parse_override  # noqa: E402
from training_app.ml.data import ClipRecord  # noqa: E402
from training_app.ml.tasks import transcription  # noqa: E402
from training_app.ml.text import error_rates  # noqa: E402
from training_app.ml.train import Runtime, default_threads, train  # noqa: E402

SECTION = "## Transcription"
INTRO = ("Produced by `bench/bench_transcription.py`: the transcription task trained on the spoken-commands demo "
         "corpus (`make_demo_dataset --kind commands`) with some voices held out entirely as the test set. Target: "
         "CER ≤ 5% on unseen voices with ≤ 10 minutes of training on 2 cores.")


def clip_records(rows: list[dict]) -> list[ClipRecord]:
    return [ClipRecord(index, row["path"], row["label"], "", row["speaker"], soundfile.info(str(row["path"])).duration,
                       transcript=row["transcript"]) for index, row in enumerate(rows)]


def real_time_factor(out_dir: Path, clips: list[ClipRecord], prediction: dict) -> tuple[float, list[str]]:
    """Seconds of computing per second of audio through model.pt2 (load excluded), and the transcripts."""
    torch.set_num_threads(1)
    module = torch.export.load(str(out_dir / "model.pt2")).module()
    context = {"prediction": prediction, "sample_rate": 16000}
    texts, busy, audio = [], 0.0, 0.0
    with torch.inference_mode():
        transcription.predict_waveform(module, load_waveform(clips[0].path, 16000).numpy(), context)  # warm-up
        for clip in clips:
            wave = load_waveform(clip.path, 16000).numpy()
            started = time.perf_counter()
            texts.append(transcription.predict_waveform(module, wave, context)["text"])
            busy += time.perf_counter() - started
            audio += len(wave) / 16000
    return busy / audio, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", type=int, default=20)
    parser.add_argument("--phrases", type=int, default=30, help="phrases per voice")
    parser.add_argument("--holdout", type=int, default=4, help="voices held out as the test set")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--set", action="append", default=[], dest="set_values", metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    overrides = {name: parse_override(name, value) for name, value in (item.split("=", 1) for item in args.set_values)}
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="bench-transcription-") as tmp:
        started = time.monotonic()
        rows = generate_command_corpus(Path(tmp) / "corpus", n_voices=args.voices, phrases_per_voice=args.phrases)
        synthesis_seconds = time.monotonic() - started
        clips = clip_records(rows)
        held_out = sorted({clip.speaker for clip in clips})[: args.holdout]
        cfg = TrainConfig.from_dict(args.preset, {"task": "transcription", "holdout_speakers": held_out,
                                                  "test_fraction": 0.0, **overrides})

        def on_progress(progress) -> None:
            if progress.epoch:
                epoch = progress.epoch
                print(f"  epoch {epoch['epoch']:3d}  train {epoch['train_loss']:.3f}  val CER {epoch['val_cer']:.3f}  "
                      f"WER {epoch['val_wer']:.3f}  {epoch['seconds']:.1f} s", flush=True)

        out_dir = Path(tmp) / "model"
        result = train(cfg, clips, out_dir, on_progress, lambda: False,
                       Runtime(Path(tmp) / "cache", None, lambda level, message: print(f"  [{level}] {message}"),
                               args.threads))
        metrics = result.metrics
        test_clips = [clip for clip in clips if clip.speaker in held_out]
        rtf, texts = real_time_factor(out_dir, test_clips, metrics["prediction"])
        norm = transcription.normalization(cfg)
        exported = error_rates([norm.apply(clip.transcript) for clip in test_clips], texts)

    seconds = [clip.duration for clip in clips]
    decoders = metrics["decoders"]
    greedy, beam = decoders["greedy"]["test"], decoders["lexicon_beam"]["test"]
    entry = "\n".join([
        f"### {timestamp()}",
        "",
        f"- Machine: {machine_line(f'torch {torch.__version__} (CPU, {args.threads} training threads)')}; "
        f"{load_note('when the run started', load_before)}.",
        f"- Data: {len(clips)} utterances ({sum(seconds) / 60:.1f} min, {min(seconds):.1f}–{max(seconds):.1f} s) from "
        f"{args.voices} espeak-ng voices, {args.phrases} phrases each, synthesised in {synthesis_seconds:.0f} s; "
        f"test: the {len(test_clips)} clips of {args.holdout} held-out voices ({', '.join(held_out)}); "
        f"{metrics['split']['train']} training and {metrics['split']['val']} validation clips from the others.",
        f"- Model: SpeechCTC, preset `{args.preset}`{' with ' + ', '.join(args.set_values) if args.set_values else ''}, "
        f"{metrics['n_parameters']:,} parameters; best epoch {metrics['best_epoch']} of {metrics['epochs_run']}.",
        "",
        "| Figure | Value |",
        "| --- | ---: |",
        f"| CER / WER on unseen voices, greedy decoding | {greedy['cer']:.2%} / {greedy['wer']:.2%} |",
        f"| CER / WER on unseen voices, beam search over the {decoders['words']} training words | "
        f"{beam['cer']:.2%} / {beam['wer']:.2%} |",
        f"| decoding the version uses (lower validation WER) | {decoders['chosen']} |",
        f"| utterances exactly right (that decoding) | {metrics['test']['sentence_accuracy']:.1%} |",
        f"| most frequent transcript: CER / WER | {metrics['reference']['cer']:.1%} / {metrics['reference']['wer']:.1%} |",
        f"| exported `model.pt2` on the same clips: CER / WER | {exported['cer']:.2%} / {exported['wer']:.2%} |",
        f"| training time (epochs only) | {metrics['training_seconds'] / 60:.1f} min |",
        f"| whole run (features, training, evaluation, export) | {result.total_seconds / 60:.1f} min |",
        f"| mean epoch | {statistics.mean(e['seconds'] for e in metrics['history']):.1f} s |",
        f"| inference real-time factor (model.pt2, 1 thread, per clip) | {rtf:.3f} |",
        "",
    ])
    publish(SECTION, INTRO, entry, not args.no_write)


if __name__ == "__main__":
    main()
