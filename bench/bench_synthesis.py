"""Synthesis benchmark: train a voice on the voice demo corpus, then fine-tune it on another speaker's sentences.

Makes the corpus with espeak-ng (``--sentences`` of en-us for the base voice, ``--tune-sentences`` of another
voice for the fine-tune), trains with the task's defaults on this machine's cores for at most ``--minutes``,
synthesises the held-out sentences and measures the real-time factor (seconds of compute per second of speech,
Griffin-Lim included), and appends training time, losses and the real-time factor to the synthesis section of
docs/benchmarks.md. No intelligibility figure: nothing offline judges speech yet.

    .venv/bin/python bench/bench_synthesis.py [--sentences 300] [--minutes 25] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import audioml  # noqa: E402, F401  (before torch: sets OMP_WAIT_POLICY)
import torch  # noqa: E402

from bench.common import append_entry, machine_facts, timestamp  # noqa: E402
from training_app.ml.tts.frontend import TextFrontend  # noqa: E402
from training_app.ml.tts.training import Callbacks, Utterance, VoiceConfig, fit_voice, load_base_voice  # noqa: E402
from training_app.voice_corpus import generate_voice_corpus, voice_sentences  # noqa: E402

SECTION = "## Synthesis"
INTRO = ("Voice training on the espeak-ng voice demo corpus (`make_demo_dataset --kind voice`), CPU only, from "
         "`bench/bench_synthesis.py`; real-time factor = synthesis seconds / seconds of speech (Griffin-Lim included).")


def epochs_for(minutes: float, n_train: int, batch_size: int, seconds_per_step: float) -> int:
    steps = minutes * 60 / max(seconds_per_step, 1e-3)
    return max(1, int(steps / max(1, -(-n_train // batch_size))))


def train_voice(corpus: Path, n: int, voice: str, seed: int, minutes: float, out_dir: Path, base=None):
    rows = generate_voice_corpus(corpus, n_sentences=n, voice=voice, seed=seed)
    utterances = [Utterance(i, row["path"], row["transcript"]) for i, row in enumerate(rows)]
    probe = VoiceConfig(epochs=1, max_steps=3)
    started = time.monotonic()
    fit_voice(probe, utterances[:48], out_dir.with_name(out_dir.name + "-probe"), Callbacks(), base)
    seconds_per_step = (time.monotonic() - started) / 3
    cfg = VoiceConfig(epochs=epochs_for(minutes, int(n * 0.9), 16, seconds_per_step))
    started = time.monotonic()
    result = fit_voice(cfg, utterances, out_dir, Callbacks(log=lambda level, message: print(level, message)), base)
    return result, time.monotonic() - started


def real_time_factor(out_dir: Path) -> float:
    import json

    config = json.loads((out_dir / "config.json").read_text())
    frontend = TextFrontend.from_config(config["text_frontend"])
    program = torch.export.load(out_dir / "model.pt2").module()
    compute, audio = 0.0, 0.0
    for text in voice_sentences(10, seed=99):
        started = time.monotonic()
        with torch.inference_mode():
            wave = program(torch.tensor([frontend.ids(text)]))
        compute += time.monotonic() - started
        audio += len(wave) / config["sample_rate"]
    return compute / audio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--tune-sentences", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--tune-minutes", type=float, default=8.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-voice-") as folder:
        root = Path(folder)
        base, base_seconds = train_voice(root / "base", args.sentences, "en-us", 0, args.minutes, root / "base-voice")
        tuned, tune_seconds = train_voice(root / "tune", args.tune_sentences, "en-gb", 1, args.tune_minutes,
                                          root / "tuned-voice", load_base_voice(root / "base-voice", "base"))
        rtf = real_time_factor(root / "base-voice")
    entry = (f"### {timestamp()} ({machine_facts()['nproc']} cores, {machine_facts()['cpu']})\n\n"
             f"| Run | Sentences | Epochs | Training time | Val mel loss | Duration error (frames) | MCD (dB) |\n"
             f"| --- | --- | --- | --- | --- | --- | --- |\n"
             f"| base voice (en-us) | {args.sentences} | {base.metrics['epochs_run']} | {base_seconds / 60:.1f} min | "
             f"{base.metrics['val_mel_loss']:.3f} | {base.metrics['val_duration_error']:.2f} | "
             f"{base.metrics['mel_cepstral_distortion']:.2f} |\n"
             f"| fine-tune (en-gb) | {args.tune_sentences} | {tuned.metrics['epochs_run']} | {tune_seconds / 60:.1f} min | "
             f"{tuned.metrics['val_mel_loss']:.3f} | {tuned.metrics['val_duration_error']:.2f} | "
             f"{tuned.metrics['mel_cepstral_distortion']:.2f} |\n\n"
             f"Real-time factor of the base voice: {rtf:.3f}.\n")
    print(entry)
    if not args.no_write:
        append_entry(SECTION, INTRO, entry)


if __name__ == "__main__":
    main()
