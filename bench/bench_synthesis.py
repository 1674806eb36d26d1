"""Synthesis benchmark: train a voice on the voice demo corpus, fine-tune it on another speaker, judge both.

Steps (each one's result is kept in ``--work``, so an interrupted run resumes and a finished one can be re-judged):

1. the corpus: ``--sentences`` of espeak-ng en-us (``make_demo_dataset --kind voice``'s generator);
2. the base voice, with the synthesis task's defaults, for as many epochs as fit in ``--minutes`` (a 4-step
   probe times a step first);
3. the judge: a transcription model (the transcription task, preset ``--judge-preset``) trained on the base
   voice's *training* sentences only, so the held-out sentences are new to both (training_app/ml/tts/judge.py);
4. the fine-tune: ``--tune-sentences`` of another espeak-ng voice (en-gb), continuing from the base voice for at
   most ``--tune-minutes``;
5. judging: for every held-out sentence of each voice the judge transcribes the real recording, Griffin-Lim of
   its true mel, and the voice's synthesis; CER/WER of each against the transcript;
6. the real-time factor of synthesis through ``model.pt2`` (Griffin-Lim included), and a picture of the real and
   synthesised mel spectrograms of one held-out sentence (``--pictures``).

Wall time, process CPU time (all threads) and the load average are recorded for every training step: the machine
is shared, so wall time is inflated by other people's work and CPU time is the steadier figure.

    .venv/bin/python bench/bench_synthesis.py [--sentences 300] [--minutes 25] [--work DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import audioml  # noqa: E402, F401  (before torch: sets OMP_WAIT_POLICY)
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402

from bench.common import load_note, machine_line, publish, timestamp  # noqa: E402
from training_app.ml.audio import load_waveform  # noqa: E402
from training_app.ml.config import TrainConfig, parse_override  # noqa: E402
from training_app.ml.data import ClipRecord  # noqa: E402
from training_app.ml.tasks import synthesis  # noqa: E402
from training_app.ml.train import Runtime, default_threads, train  # noqa: E402
from training_app.ml.tts.frontend import TextFrontend  # noqa: E402
from training_app.ml.tts.judge import Judge, judge_voice  # noqa: E402
from training_app.ml.tts.model import GriffinLimVocoder  # noqa: E402
from training_app.ml.tts.training import (  # noqa: E402
    Callbacks, Utterance, fit_voice, load_base_voice, log_mel, mel_cepstral_distortion,
)
from training_app.voice_corpus import generate_voice_corpus, voice_sentences  # noqa: E402

SECTION = "## Synthesis"
INTRO = ("Voice training on the espeak-ng voice demo corpus (`make_demo_dataset --kind voice`), CPU only, from "
         "`bench/bench_synthesis.py`. Intelligibility: a transcription model of this project trained on the base "
         "voice's training sentences transcribes each held-out sentence three ways (real recording, Griffin-Lim of "
         "its true mel, the voice's synthesis); CER/WER against the transcripts. Real-time factor = synthesis "
         "seconds / seconds of speech (Griffin-Lim included). Targets: an intelligible voice in < 30 min of "
         "training; a fine-tune on 50 sentences of a new speaker in < 10 min.")


class Meter:
    """Wall time, process CPU time (user + system, every thread) and the load average over a block."""

    def __enter__(self):
        self.wall, self.cpu, self.load = time.monotonic(), _cpu(), os.getloadavg()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.monotonic() - self.wall, _cpu() - self.cpu
        self.load_after = os.getloadavg()
        return False

    def facts(self) -> dict:
        return {"wall_seconds": round(self.wall, 1), "cpu_seconds": round(self.cpu, 1),
                "load_before": [round(x, 2) for x in self.load], "load_after": [round(x, 2) for x in self.load_after]}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def corpus(folder: Path, n: int, voice: str, seed: int) -> list[dict]:
    listing = folder / "rows.json"
    if not listing.exists():
        rows = generate_voice_corpus(folder, n_sentences=n, voice=voice, seed=seed)
        listing.write_text(json.dumps([{**row, "path": str(row["path"])} for row in rows]))
    return json.loads(listing.read_text())


def voice_cfg(overrides: dict, epochs: int, init_from: str = ""):
    cfg = TrainConfig.from_dict("balanced", {"task": "synthesis", **overrides, "epochs": epochs,
                                             **({"init_from": init_from} if init_from else {})})
    return synthesis.voice_config(cfg)


def train_voice(rows: list[dict], minutes: float, out_dir: Path, overrides: dict, base=None, epochs: int = 0) -> dict:
    """Train (or fine-tune from ``base``) unless ``out_dir`` holds a finished voice; returns its timing facts."""
    facts_file = out_dir.with_name(out_dir.name + ".timing.json")
    if facts_file.exists() and out_dir.exists():
        return json.loads(facts_file.read_text())
    utterances = [Utterance(i, row["path"], row["transcript"]) for i, row in enumerate(rows)]
    if epochs:
        return _train_voice(utterances, voice_cfg(overrides, epochs), out_dir, facts_file, base)
    probe_dir = out_dir.with_name(out_dir.name + "-probe")
    probe = fit_voice(dataclasses.replace(voice_cfg(overrides, 1), max_steps=4, heldout_samples=1),
                      utterances[:64], probe_dir, Callbacks(), base)
    shutil.rmtree(probe_dir, ignore_errors=True)
    seconds_per_step = probe.metrics["history"][0]["seconds"] / probe.metrics["history"][0]["step"]
    cfg = voice_cfg(overrides, 1)
    steps_per_epoch = -(-int(len(rows) * (1 - cfg.val_fraction)) // cfg.batch_size)
    epochs = max(1, int(minutes * 60 / seconds_per_step / steps_per_epoch))
    cfg = voice_cfg(overrides, epochs)
    print(f"{out_dir.name}: {seconds_per_step:.2f} s per step (probe, validation included) -> {epochs} epochs",
          flush=True)
    return _train_voice(utterances, cfg, out_dir, facts_file, base)


def _train_voice(utterances, cfg, out_dir: Path, facts_file: Path, base) -> dict:

    def report(fraction, eta, record):
        if record:
            print(f"  epoch {record['epoch']:4d}  mel {record['train_mel_loss']:.3f}  val mel "
                  f"{record['val_mel_loss']:.3f}  dur err {record['val_duration_error']:.2f}  "
                  f"{record['seconds']:.1f} s", flush=True)

    with Meter() as meter:
        result = fit_voice(cfg, utterances, out_dir, Callbacks(report=report, log=lambda lv, m: print(lv, m)), base)
    facts = {**meter.facts(), "epochs": result.metrics["epochs_run"], "config": cfg.__dict__}
    facts_file.write_text(json.dumps(facts))
    return facts


def train_judge(rows: list[dict], voice_dir: Path, out_dir: Path, preset: str, overrides: dict) -> dict:
    facts_file = out_dir.with_name(out_dir.name + ".timing.json")
    if facts_file.exists() and out_dir.exists():
        return json.loads(facts_file.read_text())
    held_out = set(json.loads((voice_dir / "metrics.json").read_text())["split"]["val_clips"])
    clips = [ClipRecord(i, row["path"], "speech", "", row["speaker"], soundfile.info(row["path"]).duration,
                        transcript=row["transcript"]) for i, row in enumerate(rows) if str(i) not in held_out]
    cfg = TrainConfig.from_dict(preset, {"task": "transcription", "test_fraction": 0.0, **overrides})

    def on_progress(progress) -> None:
        if progress.epoch:
            e = progress.epoch
            print(f"  judge epoch {e['epoch']:3d}  val CER {e['val_cer']:.3f}  WER {e['val_wer']:.3f}  "
                  f"{e['seconds']:.1f} s", flush=True)

    with Meter() as meter:
        result = train(cfg, clips, out_dir, on_progress, lambda: False,
                       Runtime(out_dir.parent / "judge-cache", None, lambda level, message: print(level, message),
                               default_threads()))
    facts = {**meter.facts(), "clips": len(clips), "epochs": result.metrics["epochs_run"],
             "val_cer": (result.metrics.get("val") or {}).get("cer"),
             "decoding": result.metrics["prediction"]["decoding"]}
    facts_file.write_text(json.dumps(facts))
    return facts


def renderings(voice_dir: Path, rows: list[dict]) -> tuple[list[str], dict, int, dict]:
    """The voice's held-out sentences: texts, {real, griffin_lim, synthesized} waveforms, the rate, and the first
    sentence's real and synthesised normalised mels (for the picture)."""
    config = json.loads((voice_dir / "config.json").read_text())
    metrics = json.loads((voice_dir / "metrics.json").read_text())
    audio, rate = config["audio"], config["sample_rate"]
    vc = load_voice_config(config)
    frontend = TextFrontend.from_config(config["text_frontend"])
    program = torch.export.load(voice_dir / "model.pt2").module()
    vocoder = GriffinLimVocoder(rate, audio["n_fft"], audio["hop"], audio["n_mels"], audio["f_min"], audio["f_max"],
                                audio["mel_mean"], audio["mel_std"], n_iter=audio["griffin_lim_iters"])
    texts, waves = [], {"real": [], "griffin_lim": [], "synthesized": []}
    picture = {}
    for clip in metrics["split"]["val_clips"]:
        row = rows[int(clip)]
        real = load_waveform(row["path"], rate)
        mel = (log_mel(vc, real) - audio["mel_mean"]) / audio["mel_std"]
        with torch.inference_mode():
            synthesized = program(torch.tensor([frontend.ids(row["transcript"])]))
            griffin_lim = vocoder(mel[None])[0]
        texts.append(row["transcript"])
        waves["real"].append(real)
        waves["griffin_lim"].append(griffin_lim)
        waves["synthesized"].append(synthesized)
        if not picture:
            picture = {"text": row["transcript"], "real": mel,
                       "synthesized": (log_mel(vc, synthesized) - audio["mel_mean"]) / audio["mel_std"]}
    return texts, waves, rate, picture


def load_voice_config(config: dict):
    from training_app.ml.tts.training import VoiceConfig

    return VoiceConfig(**config["voice_config"])


def speech_facts(waves: list, rate: int, texts: list[str]) -> dict:
    """Objective checks of the synthesised audio: seconds per character and RMS level (dBFS)."""
    seconds = [len(w) / rate for w in waves]
    rms = [float(torch.as_tensor(w).float().pow(2).mean().sqrt()) for w in waves]
    chars = sum(len(t) for t in texts)
    return {"seconds_per_char": sum(seconds) / chars, "rms_dbfs": 20 * np.log10(max(np.mean(rms), 1e-9))}


def mean_mcd(reals: list, synthesized: list, rate: int) -> float:
    return float(np.mean([mel_cepstral_distortion(torch.as_tensor(a), torch.as_tensor(b), rate)
                          for a, b in zip(reals, synthesized, strict=True)]))


def real_time_factor(voice_dir: Path) -> float:
    config = json.loads((voice_dir / "config.json").read_text())
    frontend = TextFrontend.from_config(config["text_frontend"])
    program = torch.export.load(voice_dir / "model.pt2").module()
    compute, audio = 0.0, 0.0
    for text in voice_sentences(10, seed=99):
        started = time.monotonic()
        with torch.inference_mode():
            wave = program(torch.tensor([frontend.ids(text)]))
        compute += time.monotonic() - started
        audio += len(wave) / config["sample_rate"]
    return compute / audio


def write_png(path: Path, picture: dict) -> None:
    """Real (top) and synthesised (bottom) mel spectrograms, low frequencies at the bottom of each, 3 px per frame
    and per mel band, on one grayscale PNG (no imaging library needed)."""
    real, synth = (np.flipud(picture[k].numpy()) for k in ("real", "synthesized"))
    width = max(real.shape[1], synth.shape[1])
    gap = np.full((4, width), np.nan)

    def pad(m):
        return np.concatenate([m, np.full((m.shape[0], width - m.shape[1]), np.nan)], axis=1)

    image = np.concatenate([pad(real), gap, pad(synth)])
    lo, hi = np.nanpercentile(image, 2), np.nanpercentile(image, 99.5)
    pixels = np.where(np.isnan(image), 255, 255 - np.clip((image - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    pixels = pixels.repeat(3, axis=0).repeat(3, axis=1)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
                     + chunk(b"IEND", b""))


def judged_row(name: str, scores: dict, facts: dict) -> str:
    return (f"| {name} | {scores['sentences']} | {scores['real']['cer']:.1%} / {scores['real']['wer']:.1%} | "
            f"{scores['griffin_lim']['cer']:.1%} / {scores['griffin_lim']['wer']:.1%} | "
            f"**{scores['synthesized']['cer']:.1%} / {scores['synthesized']['wer']:.1%}** | "
            f"{facts['seconds_per_char']:.3f} s | {facts['rms_dbfs']:.1f} dBFS |")


def timing_row(name: str, sentences: int, facts: dict, metrics: dict, mcd: float) -> str:
    return (f"| {name} | {sentences} | {facts['epochs']} | {facts['wall_seconds'] / 60:.1f} min | "
            f"{facts['cpu_seconds'] / 60:.1f} min | {facts['load_before'][0]:.1f} → {facts['load_after'][0]:.1f} | "
            f"{metrics['val_mel_loss']:.3f} | {metrics['val_duration_error']:.2f} | "
            f"{mcd:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--tune-sentences", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--tune-minutes", type=float, default=8.0)
    parser.add_argument("--epochs", type=int, default=0, help="base voice epochs (default: fit --minutes)")
    parser.add_argument("--tune-epochs", type=int, default=0, help="fine-tune epochs (default: fit --tune-minutes)")
    parser.add_argument("--set", action="append", default=[], dest="set_values", metavar="KEY=VALUE",
                        help="synthesis settings for both voices (channels=192, learning_rate=...)")
    parser.add_argument("--judge-preset", default="balanced")
    parser.add_argument("--judge-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, help="keep every step's result here (resumable); default: a temp dir")
    parser.add_argument("--pictures", type=Path, help="write the mel spectrogram PNG here")
    parser.add_argument("--stop-after", choices=["base", "judge", "tune"], help="stop after this step")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    overrides = {k: parse_override(k, v) for k, v in (item.split("=", 1) for item in args.set_values)}
    judge_overrides = {k: parse_override(k, v) for k, v in (item.split("=", 1) for item in args.judge_set)}
    temporary = None if args.work else tempfile.TemporaryDirectory(prefix="bench-voice-")
    root = args.work or Path(temporary.name)
    root.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()

    base_rows = corpus(root / "corpus-base", args.sentences, "en-us", 0)
    base_facts = train_voice(base_rows, args.minutes, root / "base-voice", overrides, epochs=args.epochs)
    if args.stop_after == "base":
        return
    judge_facts = train_judge(base_rows, root / "base-voice", root / "judge", args.judge_preset, judge_overrides)
    if args.stop_after == "judge":
        return
    tune_rows = corpus(root / "corpus-tune", args.tune_sentences, "en-gb", 1)
    tune_facts = train_voice(tune_rows, args.tune_minutes, root / "tuned-voice", overrides,
                             load_base_voice(root / "base-voice", "base"), args.tune_epochs)
    if args.stop_after == "tune":
        return

    judge = Judge.load(root / "judge", "transcription model trained on the base voice's training sentences")
    results = {}
    for name, rows in (("base-voice", base_rows), ("tuned-voice", tune_rows)):
        texts, waves, rate, picture = renderings(root / name, rows)
        results[name] = {"scores": judge_voice(judge, texts, waves, rate),
                         "facts": speech_facts(waves["synthesized"], rate, texts),
                         "real_facts": speech_facts(waves["real"], rate, texts),
                         "mcd": mean_mcd(waves["real"], waves["synthesized"], rate),
                         "metrics": json.loads((root / name / "metrics.json").read_text())}
        (root / f"{name}.judged.json").write_text(json.dumps(results[name]["scores"], indent=1))
        if args.pictures:
            args.pictures.mkdir(parents=True, exist_ok=True)
            write_png(args.pictures / f"{name}-mel.png", picture)
            print(f"{args.pictures / f'{name}-mel.png'}: {picture['text']}")
    rtf = real_time_factor(root / "base-voice")
    base, tuned = results["base-voice"], results["tuned-voice"]
    judge_cfg = TrainConfig.from_dict(args.judge_preset, {"task": "transcription", **judge_overrides})
    settings = ", ".join(f"{k}={v}" for k, v in base_facts["config"].items()
                         if k in ("channels", "encoder_layers", "decoder_layers", "learning_rate", "batch_size",
                                  "text_frontend", "griffin_lim_iters"))
    entry = "\n".join([
        f"### {timestamp()}",
        "",
        f"- Machine: {machine_line(f'torch {torch.__version__} (CPU, {torch.get_num_threads()} threads)')}; "
        f"{load_note('when the run started', load_start)}. Wall times are inflated by the other work on the "
        "machine; the process CPU time (all threads) is the steadier figure.",
        f"- Voice settings (the synthesis task's defaults"
        f"{', with ' + ', '.join(args.set_values) if args.set_values else ''}):"
        f" {settings}; {base['metrics']['n_parameters']:,} parameters.",
        f"- Base voice: {args.sentences} en-us sentences ({base['metrics']['split']['train']} train / "
        f"{base['metrics']['split']['val']} held out), {args.minutes:g}-minute budget. Fine-tune: "
        f"{args.tune_sentences} en-gb sentences ({tuned['metrics']['split']['train']} / "
        f"{tuned['metrics']['split']['val']}), {args.tune_minutes:g}-minute budget, from the base voice.",
        f"- Judge: transcription task, preset `{args.judge_preset}`"
        f"{' with ' + ', '.join(args.judge_set) if args.judge_set else ''}, trained on the base voice's "
        f"{judge_facts['clips']} training sentences in {judge_facts['wall_seconds'] / 60:.1f} min "
        f"({judge_facts['cpu_seconds'] / 60:.1f} CPU-min), {judge_facts['epochs']} epochs, decoding "
        f"`{judge_facts['decoding']}`; text {transcription_norm(judge_cfg)}.",
        "",
        "| Run | Sentences | Epochs | Wall time | CPU time | Load (1 min) before → after | Val mel loss | "
        "Duration error (frames) | MCD, held-out (dB) |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
        timing_row("base voice (en-us)", args.sentences, base_facts, base["metrics"], base["mcd"]),
        timing_row("fine-tune (en-gb)", args.tune_sentences, tune_facts, tuned["metrics"], tuned["mcd"]),
        "",
        "| Judged held-out sentences | Sentences | Real recording CER / WER | Griffin-Lim of true mel | "
        "**Synthesised** | Synth. seconds per character | Synth. level |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        judged_row("base voice (en-us)", base["scores"], base["facts"]),
        judged_row("fine-tune (en-gb)", tuned["scores"], tuned["facts"]),
        "",
        f"Real recordings: {base['real_facts']['seconds_per_char']:.3f} s per character (en-us), "
        f"{tuned['real_facts']['seconds_per_char']:.3f} (en-gb); {base['real_facts']['rms_dbfs']:.1f} dBFS. "
        f"Real-time factor of the base voice's synthesis: {rtf:.3f}.",
        "",
    ])
    publish(SECTION, INTRO, entry, not args.no_write)


def transcription_norm(cfg) -> str:
    from training_app.ml.tasks import transcription

    return transcription.normalization(cfg).describe()


if __name__ == "__main__":
    main()
