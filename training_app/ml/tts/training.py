"""Training a voice: mel features, batches of variable length, the loss, validation, held-out samples, export.

``fit_voice(cfg, utterances, out_dir, callbacks, base=None)`` is the whole run; the synthesis task's ``fit``
adapts the framework's ``TaskRun`` to it. Per step: the encoder gives each symbol a mean mel frame, monotonic
alignment search finds the most likely symbol for every real frame under those means, and the loss is the
decoder's L1 mel error + the prior's Gaussian negative log-likelihood (what drives the alignment) + the duration
predictor's error on log(1 + frames) against the alignment's durations.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
import torchaudio
from torch.export import Dim

from ..artifacts import CONFIG_FILE, METRICS_FILE, SNAPSHOT_FILE, TORCH_EXPORT_FILE, WEIGHTS_FILE, finite_json
from ..audio import load_waveform
from .alignment import durations_from_path, monotonic_alignment
from .frontend import TextFrontend
from .model import AcousticModel, GriffinLimVocoder, Synthesizer, path_from_durations, sequence_mask

SAMPLES_DIR = "samples"
VOICE_FILES = (WEIGHTS_FILE, TORCH_EXPORT_FILE, CONFIG_FILE, METRICS_FILE, SNAPSHOT_FILE, SAMPLES_DIR)
EXPORT_TOLERANCE = 1e-3
LOG_FLOOR = 1e-5
# The epoch whose weights are kept: lowest validation mel loss (what the pages chart). The total validation loss
# also holds the prior's likelihood, which keeps rising while a fine-tune overfits a few sentences even though
# the decoder's mel error still falls (bench: the 50-sentence fine-tune picked epoch 5 of 100 by it).
SELECT_ON = "val_mel_loss"
# Alignment picture: at most this many frames x symbols (averaged down) for the chart.
ALIGNMENT_PICTURE = 64


class VoiceTrainingError(ValueError):
    pass


@dataclass(frozen=True)
class VoiceConfig:
    text_frontend: str = "phonemes"
    espeak_voice: str = "en-us"
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    channels: int = 192
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.1
    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 2e-3
    seed: int = 0
    val_fraction: float = 0.1
    max_steps: int = 0  # 0: no limit (tests cap tiny runs with it)
    griffin_lim_iters: int = 32
    heldout_samples: int = 4

    def mel_transform(self) -> torchaudio.transforms.MelSpectrogram:
        return torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate, n_fft=self.n_fft, win_length=self.n_fft, hop_length=self.hop,
            f_min=self.f_min, f_max=self.f_max, n_mels=self.n_mels, power=1.0)


@dataclass(frozen=True)
class Utterance:
    id: str | int
    path: Path | str
    transcript: str


@dataclass(frozen=True)
class Callbacks:
    """``report(fraction of training, eta_seconds, epoch record or None)``; ``log(level, message)``;
    ``check_stop()`` raises to cancel (polled every step); ``phase(name)`` when "training", "evaluating" and
    "exporting" begin."""

    report: Callable[[float, float | None, dict[str, Any] | None], None] = lambda *args: None
    log: Callable[[str, str], None] = lambda level, message: None
    check_stop: Callable[[], None] = lambda: None
    phase: Callable[[str], None] = lambda name: None


@dataclass(frozen=True)
class BaseVoice:
    """A registered voice to continue from (fine-tuning): its weights, text tables and mel normalisation."""

    state: dict[str, torch.Tensor]
    frontend: TextFrontend
    mel_mean: float
    mel_std: float
    architecture: dict[str, Any]
    name: str = ""


@dataclass
class Example:
    utterance: Utterance
    ids: torch.Tensor  # (symbols,)
    mel: torch.Tensor  # (n_mels, frames), normalised
    wave: torch.Tensor


@dataclass
class VoiceResult:
    metrics: dict[str, Any]
    files: list[str]
    best_epoch: int
    export_seconds: float
    frontend: TextFrontend = field(repr=False, default=None)


# Data -----------------------------------------------------------------------------------------------------------

def log_mel(cfg: VoiceConfig, wave: torch.Tensor) -> torch.Tensor:
    return torch.log(cfg.mel_transform()(wave).clamp(min=LOG_FLOOR))


def prepare_examples(cfg: VoiceConfig, utterances: Sequence[Utterance], frontend: TextFrontend,
                     callbacks: Callbacks) -> tuple[list[Example], list[str]]:
    """Examples (mels not yet normalised) and the notes on utterances left out (too short for their text)."""
    examples, notes = [], []
    for utterance in utterances:
        callbacks.check_stop()
        ids = torch.tensor(frontend.ids(utterance.transcript), dtype=torch.int64)
        wave = load_waveform(utterance.path, cfg.sample_rate)
        mel = log_mel(cfg, wave)
        if mel.shape[1] < len(ids):
            notes.append(f"clip {utterance.id} left out: {mel.shape[1]} frames for {len(ids)} symbols")
            continue
        examples.append(Example(utterance, ids, mel, wave))
    return examples, notes


def split_examples(n: int, seed: int, val_share: float = 0.1) -> tuple[list[int], list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, min(n - 1, round(n * val_share)))
    return sorted(order[n_val:]), sorted(order[:n_val])


def collate(examples: Sequence[Example], device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    symbol_lengths = torch.tensor([len(e.ids) for e in examples])
    frame_lengths = torch.tensor([e.mel.shape[1] for e in examples])
    ids = torch.zeros(len(examples), int(symbol_lengths.max()), dtype=torch.int64)
    mels = torch.zeros(len(examples), examples[0].mel.shape[0], int(frame_lengths.max()))
    for row, example in enumerate(examples):
        ids[row, : len(example.ids)] = example.ids
        mels[row, :, : example.mel.shape[1]] = example.mel
    return ids.to(device), symbol_lengths.to(device), mels.to(device), frame_lengths.to(device)


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def batches(indices: list[int], examples: list[Example], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar length (less padding): shuffle, sort within chunks of 8 batches, cut."""
    order = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
    chunk = batch_size * 8
    result = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: examples[i].mel.shape[1])
        result.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    shuffled = torch.randperm(len(result), generator=generator).tolist()
    return [result[i] for i in shuffled]


# The loss -------------------------------------------------------------------------------------------------------

def prior_log_likelihood(prior: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
    """log N(frame; symbol mean, I) for every (symbol, frame): (batch, symbols, frames)."""
    n_mels = mels.shape[1]
    squared = (prior.pow(2).sum(1)[:, :, None] - 2 * torch.bmm(prior.transpose(1, 2), mels)
               + mels.pow(2).sum(1)[:, None, :])
    return -0.5 * squared - 0.5 * n_mels * math.log(2 * math.pi)


def step_losses(model: AcousticModel, ids, symbol_lengths, mels, frame_lengths) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The losses of one batch and the alignment path found for it."""
    hidden, prior, log_durations, symbol_mask = model.encode(ids, symbol_lengths)
    frame_mask = sequence_mask(frame_lengths, mels.shape[2]).unsqueeze(1).to(torch.float32)
    path = monotonic_alignment(prior_log_likelihood(prior, mels), symbol_lengths, frame_lengths)
    predicted, frame_prior = model.decode(hidden, prior, path, frame_mask)
    n_values = frame_mask.sum() * mels.shape[1]
    mel_loss = ((predicted - mels).abs() * frame_mask).sum() / n_values
    prior_loss = 0.5 * (((frame_prior - mels) ** 2) * frame_mask).sum() / n_values
    target_log = torch.log1p(durations_from_path(path))
    duration_loss = (((log_durations - target_log) ** 2) * symbol_mask.squeeze(1)).sum() / symbol_mask.sum()
    losses = {"mel": mel_loss, "prior": prior_loss, "duration": duration_loss,
              "total": mel_loss + prior_loss + duration_loss}
    return losses, path


def validate(model: AcousticModel, examples: list[Example], indices: list[int], batch_size: int) -> dict[str, float]:
    """Validation mel L1 (decoder on the aligned text), the total loss, and the duration predictor's mean
    absolute error per symbol against the alignment, in frames."""
    model.eval()
    sums = {"mel": 0.0, "total": 0.0}
    duration_error, n_symbols, n_items = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            chunk = [examples[i] for i in indices[start : start + batch_size]]
            ids, symbol_lengths, mels, frame_lengths = collate(chunk, device_of(model))
            losses, path = step_losses(model, ids, symbol_lengths, mels, frame_lengths)
            for key in sums:
                sums[key] += float(losses[key]) * len(chunk)
            _, _, log_durations, mask = model.encode(ids, symbol_lengths)
            predicted = torch.expm1(log_durations).clamp(min=0) * mask.squeeze(1)
            duration_error += float(((predicted - durations_from_path(path)).abs() * mask.squeeze(1)).sum())
            n_symbols += int(mask.sum())
            n_items += len(chunk)
    return {"val_mel_loss": sums["mel"] / n_items, "val_loss": sums["total"] / n_items,
            "val_duration_error": duration_error / max(1, n_symbols)}


# The run --------------------------------------------------------------------------------------------------------

def fit_voice(cfg: VoiceConfig, utterances: Sequence[Utterance], out_dir: Path, callbacks: Callbacks = Callbacks(),
              base: BaseVoice | None = None, snapshot: dict[str, Any] | None = None,
              more_metrics: Callable[[dict[str, Any]], dict[str, Any]] = lambda metrics: {},
              device: str = "cpu") -> VoiceResult:
    """Train (or, with ``base``, fine-tune) a voice on one speaker's utterances; write its artifacts atomically
    into ``out_dir``: weights, the exported synthesizer, config (with the text tables), metrics, and held-out
    sentences synthesised beside their real recordings under ``samples/``. ``more_metrics(metrics)`` adds the
    caller's entries just before they are written."""
    started = time.monotonic()
    torch.manual_seed(cfg.seed)
    frontend = _frontend(cfg, utterances, base)
    examples, notes = prepare_examples(cfg, utterances, frontend, callbacks)
    for note in notes:
        callbacks.log("warning", note)
    if len(examples) < 2:
        raise VoiceTrainingError(f"{len(examples)} usable utterances; at least 2 are needed (1 to validate)")
    train_indices, val_indices = split_examples(len(examples), cfg.seed, cfg.val_fraction)
    mel_mean, mel_std = _normalisation(cfg, examples, train_indices, base)
    for example in examples:
        example.mel = (example.mel - mel_mean) / mel_std
    callbacks.log("info", f"{len(train_indices)} training and {len(val_indices)} validation utterances; "
                          f"{frontend.n_symbols} symbols ({frontend.mode})")
    model = _model(cfg, frontend, base).to(device)
    callbacks.phase("training")
    history, best_epoch, best_state = _train(cfg, model, examples, train_indices, val_indices, callbacks)
    model.load_state_dict(best_state)
    model = model.cpu().eval()
    training_seconds = time.monotonic() - started
    callbacks.phase("evaluating")
    vocoder = GriffinLimVocoder(cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels, cfg.f_min, cfg.f_max,
                                mel_mean, mel_std, n_iter=cfg.griffin_lim_iters)
    synthesizer = Synthesizer(copy.deepcopy(model), vocoder).eval()
    metrics = {
        "task": "synthesis",
        "history": history,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "split": {"train": len(train_indices), "val": len(val_indices), "left_out": len(notes),
                  "val_clips": [str(examples[i].utterance.id) for i in val_indices]},
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "training_seconds": training_seconds,
        "fine_tuned_from": base.name if base is not None else None,
        **{key: history[best_epoch - 1][key] for key in ("val_mel_loss", "val_duration_error", "val_loss")},
        "alignment": alignment_picture(model, examples[val_indices[0]], frontend),
    }
    callbacks.phase("exporting")
    metrics.update(more_metrics(metrics))
    mark = time.monotonic()
    config = voice_config(cfg, frontend, mel_mean, mel_std, metrics)
    files = write_voice(out_dir, model, synthesizer, config, metrics, snapshot,
                        [examples[i] for i in val_indices[: cfg.heldout_samples]], cfg, callbacks)
    return VoiceResult(metrics, files, best_epoch, time.monotonic() - mark, frontend)


def _frontend(cfg: VoiceConfig, utterances: Sequence[Utterance], base: BaseVoice | None) -> TextFrontend:
    """The base voice's table with any new symbols appended (their embeddings start fresh), or a new table."""
    built = TextFrontend.build((u.transcript for u in utterances), cfg.text_frontend, cfg.espeak_voice)
    if base is None:
        return built
    if (base.frontend.mode, base.frontend.voice) != (built.mode, built.voice):
        raise VoiceTrainingError(
            f"the base voice reads text as {base.frontend.mode} ({base.frontend.voice}); this job asks for "
            f"{built.mode} ({built.voice}): use the base voice's text front end to fine-tune it")
    extra = [symbol for symbol in built.symbols if symbol not in base.frontend.symbols]
    return TextFrontend(base.frontend.mode, base.frontend.voice, (*base.frontend.symbols, *extra),
                        base.frontend.add_blank)


def _normalisation(cfg, examples, train_indices, base: BaseVoice | None) -> tuple[float, float]:
    if base is not None:
        return base.mel_mean, base.mel_std
    values = torch.cat([examples[i].mel.reshape(-1) for i in train_indices])
    return float(values.mean()), float(values.std().clamp(min=1e-3))


def _model(cfg: VoiceConfig, frontend: TextFrontend, base: BaseVoice | None) -> AcousticModel:
    if base is None:
        return AcousticModel(frontend.n_symbols, cfg.n_mels, cfg.channels, cfg.encoder_layers, cfg.decoder_layers,
                             cfg.dropout)
    arch = base.architecture
    model = AcousticModel(frontend.n_symbols, arch["n_mels"], arch["channels"], arch["encoder_layers"],
                          arch["decoder_layers"], arch["dropout"])
    state = dict(base.state)
    embedding = model.encoder.embedding.weight.detach().clone()
    known = state["encoder.embedding.weight"]
    embedding[: known.shape[0]] = known
    state["encoder.embedding.weight"] = embedding
    model.load_state_dict(state)
    return model


def _train(cfg: VoiceConfig, model: AcousticModel, examples: list[Example], train_indices: list[int],
           val_indices: list[int], callbacks: Callbacks) -> tuple[list[dict[str, Any]], int, dict]:
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    steps_per_epoch = -(-len(train_indices) // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    warmup = max(1, min(200, total_steps // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * max(0.0, 1 - step / total_steps)))
    history: list[dict[str, Any]] = []
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    step, started = 0, time.monotonic()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        epoch_started, loss_sums, n_seen = time.monotonic(), {}, 0
        for batch in batches(train_indices, examples, cfg.batch_size, generator):
            if step >= total_steps:
                break
            callbacks.check_stop()
            losses, _ = step_losses(model, *collate([examples[i] for i in batch], device_of(model)))
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            step += 1
            for key, value in losses.items():
                loss_sums[key] = loss_sums.get(key, 0.0) + value.item() * len(batch)
            n_seen += len(batch)
            elapsed = time.monotonic() - started
            callbacks.report(step / total_steps, elapsed / step * (total_steps - step), None)
        if not n_seen:
            break
        record = {
            "epoch": epoch, "step": step,
            "train_loss": loss_sums["total"] / n_seen,
            "train_mel_loss": loss_sums["mel"] / n_seen,
            "train_prior_loss": loss_sums["prior"] / n_seen,
            "train_duration_loss": loss_sums["duration"] / n_seen,
            **validate(model, examples, val_indices, cfg.batch_size),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.monotonic() - epoch_started,
        }
        history.append(record)
        if record[SELECT_ON] < best[0]:
            best = (record[SELECT_ON], epoch, copy.deepcopy(model.state_dict()))
        elapsed = time.monotonic() - started
        callbacks.report(step / total_steps, elapsed / step * (total_steps - step), record)
    if not history:
        raise VoiceTrainingError("no training step ran")
    callbacks.log("info", f"best epoch {best[1]} of {len(history)}: validation mel loss {best[0]:.4f}")
    return history, best[1], best[2]


# Evaluation pictures and samples ---------------------------------------------------------------------------------

def alignment_picture(model: AcousticModel, example: Example, frontend: TextFrontend) -> dict[str, Any]:
    """For one held-out sentence: the prior's soft alignment (each frame's probabilities over the symbols,
    averaged down to at most ALIGNMENT_PICTURE x ALIGNMENT_PICTURE cells), the hard path's durations and the
    symbols. A healthy alignment is a sharp staircase from the top left to the bottom right."""
    with torch.no_grad():
        ids, symbol_lengths, mels, frame_lengths = collate([example])
        _, prior, _, _ = model.encode(ids, symbol_lengths)
        likelihood = prior_log_likelihood(prior, mels)
        path = monotonic_alignment(likelihood, symbol_lengths, frame_lengths)[0]
        soft = torch.softmax(likelihood[0], dim=0)
    n_symbols, n_frames = soft.shape
    rows = _bins(n_symbols, ALIGNMENT_PICTURE)
    cols = _bins(n_frames, ALIGNMENT_PICTURE)
    matrix = [[round(float(soft[r0:r1, c0:c1].sum(0).mean()), 3) for c0, c1 in cols] for r0, r1 in rows]
    on_path = float((soft * path).sum() / n_frames)
    return {
        "clip": str(example.utterance.id),
        "text": example.utterance.transcript,
        "symbols": frontend.readable(example.ids.tolist()),
        "durations": durations_from_path(path[None])[0].to(torch.int64).tolist(),
        "matrix": matrix,
        "matrix_rows": [[r0, r1] for r0, r1 in rows],
        "matrix_cols": [[c0, c1] for c0, c1 in cols],
        "path_confidence": round(on_path, 4),
    }


def _bins(n: int, limit: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, min(n, limit) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def voice_config(cfg: VoiceConfig, frontend: TextFrontend, mel_mean: float, mel_std: float,
                 metrics: dict[str, Any]) -> dict[str, Any]:
    from ..export import code_version

    return {
        "format_version": 1,
        "task": "synthesis",
        "labels": [],
        "sample_rate": cfg.sample_rate,
        "input": {"name": "ids", "dtype": "int64", "shape": [1, "symbols"],
                  "preprocessing": "text -> symbol ids with text_frontend (one sentence per call)"},
        "output": {"name": "waveform", "dtype": "float32", "shape": ["samples"],
                   "description": "mono waveform at sample_rate in [-1, 1] (Griffin-Lim of the predicted mel)"},
        "text_frontend": frontend.to_config(),
        "audio": {"n_fft": cfg.n_fft, "hop": cfg.hop, "n_mels": cfg.n_mels, "f_min": cfg.f_min, "f_max": cfg.f_max,
                  "mel_mean": mel_mean, "mel_std": mel_std, "griffin_lim_iters": cfg.griffin_lim_iters},
        "model": {"name": "AcousticModel", "n_mels": cfg.n_mels, "channels": cfg.channels,
                  "encoder_layers": cfg.encoder_layers, "decoder_layers": cfg.decoder_layers,
                  "dropout": cfg.dropout, "n_parameters": metrics["n_parameters"]},
        "prediction": {"max_symbols": 4096},
        "fine_tuned_from": metrics.get("fine_tuned_from"),
        "best_epoch": metrics["best_epoch"],
        "voice_config": asdict(cfg),
        "files": {"weights": WEIGHTS_FILE, "torch_export": TORCH_EXPORT_FILE, "onnx": None,
                  "onnx_note": "not exported: the output length depends on the predicted durations",
                  "metrics": METRICS_FILE, "snapshot": SNAPSHOT_FILE, "samples": SAMPLES_DIR},
        "torch_version": torch.__version__,
        "torchaudio_version": torchaudio.__version__,
        "code_version": code_version(),
    }


def write_voice(out_dir: Path, model: AcousticModel, synthesizer: Synthesizer, config: dict[str, Any],
                metrics: dict[str, Any], snapshot: dict[str, Any] | None, heldout: list[Example],
                cfg: VoiceConfig, callbacks: Callbacks) -> list[str]:
    """Every artifact into a temporary sibling folder, renamed into ``out_dir`` at the end (all or nothing)."""
    from ..export import ensure_free

    out_dir = Path(out_dir)
    ensure_free(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp_dir.chmod(0o755)
        torch.save(model.state_dict(), tmp_dir / WEIGHTS_FILE)
        metrics["samples"] = write_samples(tmp_dir / SAMPLES_DIR, synthesizer, heldout, cfg, callbacks)
        if metrics["samples"]:
            metrics["mel_cepstral_distortion"] = round(float(np.mean([s["mcd_db"] for s in metrics["samples"]])), 3)
        _write_json(tmp_dir / CONFIG_FILE, config)
        _write_json(tmp_dir / METRICS_FILE, metrics)
        _write_json(tmp_dir / SNAPSHOT_FILE, snapshot or {})
        export_synthesizer(synthesizer, [e.ids for e in heldout[:2]], tmp_dir / TORCH_EXPORT_FILE)
        callbacks.check_stop()
        ensure_free(out_dir)
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())


def write_samples(folder: Path, synthesizer: Synthesizer, heldout: list[Example], cfg: VoiceConfig,
                  callbacks: Callbacks) -> list[dict[str, Any]]:
    """Each held-out sentence twice: the real recording and the voice's rendering of its text."""
    folder.mkdir()
    samples = []
    for number, example in enumerate(heldout, start=1):
        callbacks.check_stop()
        with torch.no_grad():
            wave = synthesizer(example.ids[None])
        real_name, synth_name = f"{number:02d}_real.wav", f"{number:02d}_synthesized.wav"
        soundfile.write(folder / real_name, example.wave.numpy(), cfg.sample_rate, subtype="PCM_16")
        soundfile.write(folder / synth_name, wave.numpy(), cfg.sample_rate, subtype="PCM_16")
        samples.append({"clip": str(example.utterance.id), "text": example.utterance.transcript,
                        "mcd_db": round(mel_cepstral_distortion(example.wave, wave, cfg.sample_rate), 3),
                        "real": f"{SAMPLES_DIR}/{real_name}", "synthesized": f"{SAMPLES_DIR}/{synth_name}",
                        "real_seconds": round(len(example.wave) / cfg.sample_rate, 3),
                        "synthesized_seconds": round(len(wave) / cfg.sample_rate, 3)})
    return samples


def mel_cepstral_distortion(reference: torch.Tensor, synthesized: torch.Tensor, sample_rate: int) -> float:
    """Mel cepstral distortion in dB (coefficients 1-12 of torchaudio's MFCC, frames paired by dynamic time
    warping): how far the voice's rendering is from the real recording of the same sentence. Lower is better and
    it needs no model; it compares versions of AudioML voices, not figures from papers (whose cepstra differ)."""
    mfcc = torchaudio.transforms.MFCC(sample_rate=sample_rate, n_mfcc=13,
                                      melkwargs={"n_fft": 1024, "hop_length": 256, "n_mels": 40})
    a, b = (mfcc(w.float())[1:].T.double().numpy() for w in (reference, synthesized))
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    total = np.full((len(a) + 1, len(b) + 1), np.inf)
    steps = np.zeros_like(total)
    total[0, 0] = 0.0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            options = (total[i - 1, j], total[i - 1, j - 1], total[i, j - 1])
            k = int(np.argmin(options))
            previous = ((i - 1, j), (i - 1, j - 1), (i, j - 1))[k]
            total[i, j] = cost[i - 1, j - 1] + options[k]
            steps[i, j] = steps[previous] + 1
    # torchaudio's MFCC takes the DCT of dB *power* (10*log10 |X|^2 = (20/ln 10) ln |X|), i.e. (20/ln 10) x the
    # natural-log amplitude cepstra of the usual definition MCD = (10/ln 10) * sqrt(2 * sum of squared
    # differences), which leaves sqrt(2) / 2 here.
    return float(np.sqrt(2) / 2 * total[len(a), len(b)] / steps[len(a), len(b)])


def export_synthesizer(synthesizer: Synthesizer, checks: list[torch.Tensor], path: Path) -> None:
    """torch.export with any number of symbols (the frame count follows the predicted durations); the
    reloaded program must reproduce the eager model on sentences of other lengths."""
    sample = checks[0][None] if checks else torch.tensor([[1, 2, 1]])
    program = torch.export.export(synthesizer, (sample,),
                                  dynamic_shapes={"ids": {1: Dim("symbols", min=1, max=4096)}})
    torch.export.save(program, path)
    reloaded = torch.export.load(path).module()
    with torch.no_grad():
        for ids in [sample, *(c[None] for c in checks[1:])]:
            expected, got = synthesizer(ids), reloaded(ids)
            if expected.shape != got.shape or float((expected - got).abs().max()) > EXPORT_TOLERANCE:
                raise RuntimeError(f"{TORCH_EXPORT_FILE} does not reproduce the trained voice")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(finite_json(data), indent=2, sort_keys=True, allow_nan=False) + "\n")


def load_base_voice(artifact_dir: Path, name: str = "") -> BaseVoice:
    config = json.loads((Path(artifact_dir) / CONFIG_FILE).read_text())
    if config.get("task") != "synthesis":
        raise VoiceTrainingError(f"{name or artifact_dir} is a {config.get('task')} model, not a voice")
    state = torch.load(Path(artifact_dir) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    return BaseVoice(state, TextFrontend.from_config(config["text_frontend"]), config["audio"]["mel_mean"],
                     config["audio"]["mel_std"], config["model"], name)
