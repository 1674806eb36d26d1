"""Wake-word detection on a frozen pretrained speech embedding (``architecture=speech_embedding``), the way
openWakeWord detects: the waveform goes through a fixed front end (``speech_embedding``: log-mel, then Google's
speech embedding, one 96-number vector every 80 ms, each summarising ~0.775 s), and only a small head is trained
on the window's embeddings (``clip_seconds`` 2 gives 16, openWakeWord's 1.28 s of embeddings; ``EmbeddingHead``).
The front end was trained on a large amount of speech by many speakers, so the head sees what was said more than
who said it, which is what the log-mel CNN trained on a few dozen voices does not learn: ordinary
speech by unseen voices scored as high as the wake phrase (docs/benchmarks.md, Detection).

Training (``fit``), on the job's device, costs one pass of the front end over the audio and many cheap passes of
the head:

- every training clip becomes several windows of ``clip_seconds`` (``POSITIVE_COPIES`` per positive,
  ``NEGATIVE_COPIES`` per other clip): placed at a random offset (a positive only where the window holds the whole
  phrase), sped up or slowed down a little (other voices' rates and pitches), and most of them mixed with a random
  stretch of the training background recordings at a random signal-to-noise ratio (the rest over silence, as a
  short clip is padded at inference); their embeddings are computed once;
- the training background recordings are embedded once and every window of them (one every 80 ms) is a negative in
  every epoch: tens of thousands of negatives, as openWakeWord trains on hours of ordinary audio;
- the loss is a weighted binary cross-entropy in which the negative clips together and the background windows
  together each weigh ``negative_weight`` times all positives (``group_weights``);
- after every epoch the head scores the validation clips (as predictions score them) and the whole validation
  recording (embedded once), and the checkpoint is chosen as for the other detection networks: the fewest
  validation false rejects within the false-accept budget, the five best averaged when validation agrees.

Streaming evaluation embeds each stream once (``stream_scores``) and slides the head one embedding (80 ms) at a
time: the same scores the exported model gives each window, because the front end is local (a window's embeddings
are the stream's embeddings at the same places). The exported model holds the front end and the head: a waveform
window in, a score out, like every other detection version.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .audio import load_waveform
from .data import BackgroundPart, background_roles
from .device import GradScaler, autocast, precision_name
from .model import ExportedModel, ScoreOutput

# Augmented windows of each training clip.
POSITIVE_COPIES = 16
NEGATIVE_COPIES = 12
# Share of the windows with silence around the clip instead of background audio.
SILENT_SHARE = 0.2
# Signal-to-noise ratios (dB) of the clip over the background stretch mixed under it.
SNR_DB = (0.0, 20.0)
# Playback speeds (tempo and pitch together).
SPEEDS = (0.88, 0.94, 1.0, 1.06, 1.12)
# At most this much of the background recordings is embedded for training and for the checkpoint choice.
TRAIN_BACKGROUND_SECONDS = 4 * 3600.0
VALIDATION_SECONDS = 2 * 3600.0
EMBED_BATCH = 32
STREAM_CHUNK_EMBEDDINGS = 375  # 30 s of stream per front-end call
HEAD_BATCH = 512
SCORE_BATCH = 8192
HEAD_WIDTH_PER_CHANNEL = 4
# The head's two convolutions of kernel 3 need this many embeddings (clip_seconds 1.25 gives 6).
MIN_EMBEDDINGS = 5


class EmbeddingHead(nn.Module):
    """The trained head: two 1-D convolutions (kernel 3) over the window's embeddings, ReLU, dropout, the maximum
    over time, one logit. (batch, n_embeddings, dim) -> (batch, 1).

    openWakeWord's head flattens the window's 16 embeddings into fully connected layers, which ties what it learns
    to where in the window the phrase falls; on the demo corpus it accepted 18-48 ordinary-speech windows per hour
    of unseen voices. Convolutions with a maximum over time find the phrase wherever it falls and cut those false
    accepts to 4 per hour in the same trials (docs/benchmarks.md, Detection)."""

    def __init__(self, n_embeddings: int, dim: int, width: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.n_embeddings, self.dim, self.width = n_embeddings, dim, width
        self.convolutions = nn.Sequential(
            nn.Conv1d(dim, width, 3), nn.ReLU(), nn.Dropout(dropout), nn.Conv1d(width, width, 3), nn.ReLU(),
        )
        self.classifier = nn.Linear(width, 1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.convolutions(embeddings.transpose(1, 2)).amax(dim=-1))


# The front end ----------------------------------------------------------------------------------------------

def frontend() -> nn.Module:
    """The frozen pretrained front end: waveform (batch, samples) -> embeddings (batch, n, dim)."""
    from .speech_embedding import load_front_end

    return load_front_end()


class Geometry:
    """Where the front end's embeddings fall: one every ``hop`` samples, the first over ``span`` samples."""

    def __init__(self, embedder: nn.Module, sample_rate: int) -> None:
        from . import speech_embedding as se

        if sample_rate != se.SAMPLE_RATE:
            raise ValueError(f"the speech embedding takes {se.SAMPLE_RATE} Hz audio, not {sample_rate} Hz")
        self.hop = se.EMBEDDING_HOP * se.MEL_HOP
        self.span = se.samples_for_embeddings(1)
        self.dim = se.EMBEDDING_DIM
        self.sample_rate = sample_rate

    def count(self, samples: int) -> int:
        from .speech_embedding import embedding_count

        return embedding_count(samples)

    @property
    def hop_seconds(self) -> float:
        return self.hop / self.sample_rate


def embed_windows(embedder: nn.Module, windows: torch.Tensor, device: torch.device,
                  check_stop: Callable[[], None] = lambda: None, batch: int = EMBED_BATCH) -> torch.Tensor:
    """Embeddings of (n, samples) windows, (n, n_embeddings, dim), on the CPU."""
    parts = []
    with torch.inference_mode():
        for start in range(0, len(windows), batch):
            check_stop()
            parts.append(embedder(windows[start : start + batch].to(device)).float().cpu())
    return torch.cat(parts) if parts else torch.zeros(0)


def stream_embeddings(blocks: Iterable[np.ndarray], embedder: nn.Module, geometry: Geometry, window_samples: int,
                      device: torch.device, check_stop: Callable[[], None] = lambda: None,
                      chunk: int = STREAM_CHUNK_EMBEDDINGS) -> tuple[torch.Tensor, int]:
    """(embeddings (T, dim), samples): the stream's embeddings, one every ``geometry.hop`` samples, over the stream
    zero-padded to the end of its last window (the windows start every hop, the last one reaching the end of the
    stream, as ``streaming.score_stream`` slides them)."""
    hop, span = geometry.hop, geometry.span
    buffer = np.zeros(0, dtype=np.float32)
    parts: list[torch.Tensor] = []
    total = 0

    def take(count: int) -> None:
        nonlocal buffer
        check_stop()
        audio = torch.from_numpy(np.ascontiguousarray(buffer[: span + (count - 1) * hop]))
        with torch.inference_mode():
            parts.append(embedder(audio.unsqueeze(0).to(device))[0, :count].float().cpu())
        buffer = buffer[count * hop :]

    for block in blocks:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        total += len(block)
        buffer = np.concatenate([buffer, block])
        while len(buffer) >= span + (chunk - 1) * hop:
            take(chunk)
    windows = 1 + math.ceil(max(total - window_samples, 0) / hop) if total else 0
    needed = (windows - 1) * hop + window_samples if windows else 0
    wanted = geometry.count(needed)
    done = sum(len(part) for part in parts)
    if wanted > done:
        padding = span + (wanted - done - 1) * hop - len(buffer)
        buffer = np.concatenate([buffer, np.zeros(max(0, padding), dtype=np.float32)])
        while done < wanted:
            count = min(chunk, wanted - done)
            take(count)
            done += count
    return (torch.cat(parts) if parts else torch.zeros(0, geometry.dim)), total


def head_scores(head: nn.Module, embeddings: torch.Tensor, n_embeddings: int, device: torch.device,
                logits: bool = False) -> np.ndarray:
    """The head's score (sigmoid, or logit) of every window of consecutive ``n_embeddings`` of a stream."""
    if len(embeddings) < n_embeddings:
        return np.zeros(0)
    windows = embeddings.unfold(0, n_embeddings, 1).transpose(1, 2)  # (windows, n_embeddings, dim), a view
    head.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(windows), SCORE_BATCH):
            values = head(windows[start : start + SCORE_BATCH].to(device))[:, 0].float()
            out.append((values if logits else torch.sigmoid(values)).cpu())
    return torch.cat(out).double().numpy()


def stream_scores(blocks: Iterable[np.ndarray], model: ExportedModel, sample_rate: int, window_samples: int,
                  device: torch.device = torch.device("cpu")):
    """``streaming.StreamScores`` of an exported speech-embedding detector over a stream, a window every embedding
    hop: what ``streaming.score_stream`` gives with the exported model, the stream embedded once."""
    from .streaming import StreamScores

    geometry = Geometry(model.frontend, sample_rate)
    embeddings, total = stream_embeddings(blocks, model.frontend.to(device), geometry, window_samples, device)
    n_embeddings = geometry.count(window_samples)
    scores = head_scores(model.network.to(device), embeddings, n_embeddings, device)
    model.to("cpu")
    return StreamScores(scores, geometry.hop_seconds, window_samples / sample_rate, total / sample_rate)


def is_embedding_model(model: nn.Module) -> bool:
    return isinstance(getattr(model, "network", None), EmbeddingHead)


# Training windows -------------------------------------------------------------------------------------------

def _sound_range(wave: torch.Tensor, window: int, frame: int = 160) -> tuple[int, int]:
    """The offsets (inclusive range) of a ``window``-sample crop of a longer clip that hold its whole phrase."""
    from .augment import sound_offsets

    frames = wave[: len(wave) // frame * frame].reshape(-1, frame)
    energy = frames.double().pow(2).mean(dim=1).unsqueeze(0)
    low, high = sound_offsets(energy, window // frame)
    return low * frame, high * frame


def _speed(wave: torch.Tensor, factor: float) -> torch.Tensor:
    import torchaudio.functional as AF

    if abs(factor - 1.0) < 1e-6:
        return wave
    return AF.resample(wave, int(round(100 * factor)), 100)


class BackgroundReader:
    """Random stretches of the training background recordings (read from disk, never whole)."""

    def __init__(self, parts: Sequence[BackgroundPart], sample_rate: int) -> None:
        self.parts = [part for part in parts if part.seconds > 0]
        self.sample_rate = sample_rate

    def __bool__(self) -> bool:
        return bool(self.parts)

    def stretch(self, samples: int, rng: np.random.Generator) -> torch.Tensor:
        import soundfile

        weights = np.array([part.seconds for part in self.parts])
        part = self.parts[int(rng.choice(len(self.parts), p=weights / weights.sum()))]
        first = int(part.start * self.sample_rate)
        last = int((part.start + part.seconds) * self.sample_rate) - samples
        start = int(rng.integers(first, max(first + 1, last)))
        data, _ = soundfile.read(str(part.clip.path), start=start, frames=samples, dtype="float32", always_2d=True)
        wave = torch.from_numpy(data.mean(axis=1))
        return torch.nn.functional.pad(wave, (0, samples - len(wave)))


def augmented_window(wave: torch.Tensor, positive: bool, window: int, rng: np.random.Generator,
                     background: BackgroundReader | None) -> torch.Tensor:
    """One training window of ``window`` samples holding the clip (sped up or down, placed at random, a positive
    whole), over silence or a random stretch of background audio at a random signal-to-noise ratio."""
    wave = _speed(wave, float(rng.choice(SPEEDS)))
    if len(wave) > window:
        low, high = _sound_range(wave, window) if positive else (0, len(wave) - window)
        offset = int(rng.integers(low, high + 1))
        placed = wave[offset : offset + window].clone()
    else:
        offset = int(rng.integers(0, window - len(wave) + 1))
        placed = torch.zeros(window)
        placed[offset : offset + len(wave)] = wave
    if background and rng.random() >= SILENT_SHARE:
        noise = background.stretch(window, rng)
        signal_power = float(wave.pow(2).mean()) + 1e-10
        noise_power = float(noise.pow(2).mean()) + 1e-10
        snr = rng.uniform(*SNR_DB)
        placed = placed + noise * math.sqrt(signal_power / (noise_power * 10 ** (snr / 10)))
    peak = float(placed.abs().max())
    gain = 10 ** (rng.uniform(-10, 6) / 20)
    if peak * gain > 0.99:
        gain = 0.99 / peak
    return placed * gain


def clip_windows(wave: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """The windows a prediction scores on a clip: every ``hop`` from its start, the last one reaching its end,
    zero-padded past it (``streaming.clip_score``)."""
    count = 1 + math.ceil(max(len(wave) - window, 0) / hop)
    padded = torch.nn.functional.pad(wave, (0, (count - 1) * hop + window - len(wave)))
    return padded.unfold(0, window, hop)


def group_weights(clip_targets: torch.Tensor, background_count: int, negative_weight: float) -> torch.Tensor:
    """Per-window loss weights: the positive windows weigh 1 each; the negative clip windows (confusable phrases,
    other words, noise) together weigh ``negative_weight`` times the positives, and so do the background windows
    together. Weighing all negatives as one group (the default loop's loss) drowns the few confusable clips in tens
    of thousands of background windows: on the demo corpus the head then accepted "hey margo" and "hey barlow"
    (docs/benchmarks.md, Detection)."""
    positives = float(clip_targets.sum())
    clip_negatives = float(len(clip_targets) - positives)
    weights = torch.where(clip_targets > 0.5, 1.0, negative_weight * positives / max(clip_negatives, 1.0))
    background = torch.full((background_count,), negative_weight * positives / max(background_count, 1))
    return torch.cat([weights, background])


class WindowBank:
    """The training windows: the augmented clips' embeddings (n, n_embeddings, dim), then every window of the
    embedded training background streams, gathered batch by batch (never all materialised)."""

    def __init__(self, clips: torch.Tensor, streams: Sequence[torch.Tensor], n_embeddings: int) -> None:
        self.clips = clips
        self.n_embeddings = n_embeddings
        usable = [stream for stream in streams if len(stream) >= n_embeddings]
        self.frames = torch.cat(usable) if usable else torch.zeros(0, clips.shape[-1])
        starts, offset = [], 0
        for stream in usable:
            starts.append(torch.arange(len(stream) - n_embeddings + 1) + offset)
            offset += len(stream)
        self.starts = torch.cat(starts) if starts else torch.zeros(0, dtype=torch.long)

    @property
    def background_count(self) -> int:
        return len(self.starts)

    def __len__(self) -> int:
        return len(self.clips) + len(self.starts)

    def to(self, device: torch.device) -> WindowBank:
        self.clips, self.frames, self.starts = self.clips.to(device), self.frames.to(device), self.starts.to(device)
        return self

    def windows(self, indices: torch.Tensor) -> torch.Tensor:
        """(len(indices), n_embeddings, dim) for indices below ``len(self)``: clips first, then background."""
        out = torch.empty(len(indices), self.n_embeddings, self.clips.shape[-1], device=self.clips.device)
        from_clips = indices < len(self.clips)
        out[from_clips] = self.clips[indices[from_clips]]
        starts = self.starts[indices[~from_clips] - len(self.clips)]
        out[~from_clips] = self.frames[starts.unsqueeze(1) + torch.arange(self.n_embeddings, device=starts.device)]
        return out


# The training loop ------------------------------------------------------------------------------------------

def fit(run) -> Any:
    """Train the head on the frozen front end, evaluate as every detection job does, export front end + head."""
    from . import train as trainer
    from .export import ExportCancelled, build_config, write_artifacts
    from .features import LogMelFrontend
    from .streaming import StreamScores, calibrate_threshold, read_blocks, smoothed
    from .tasks import detection
    from .tasks.common import Fitted

    cfg, device, features = run.cfg, run.device, run.features
    run.labels = run.task.labels(run.clips, cfg)
    run.targets = run.task.targets(run.clips, run.labels, cfg)
    split = run.split()
    run.timings["preparing_seconds"] = time.monotonic() - run.started
    run.check_stop()

    mark = time.monotonic()
    embedder = frontend().to(device)
    geometry = Geometry(embedder, features.sample_rate)
    window = features.clip_samples
    n_embeddings = geometry.count(window)
    if n_embeddings < MIN_EMBEDDINGS:
        raise trainer.NotTrainable([f"clip_seconds {cfg.clip_seconds:g} gives {n_embeddings} speech embeddings; the "
                                    f"head needs at least {MIN_EMBEDDINGS}"])
    roles = background_roles(run.backgrounds) if run.backgrounds else None
    rng = np.random.default_rng(cfg.seed)
    reader = BackgroundReader(roles.train if roles else [], features.sample_rate)
    waves = {i: load_waveform(run.clips[i].path, features.sample_rate) for i in split.train + split.val}
    positives = [bool(run.targets[i] > 0.5) for i in range(len(run.clips))]
    windows, targets = [], []
    for i in split.train:
        for _ in range(POSITIVE_COPIES if positives[i] else NEGATIVE_COPIES):
            windows.append(augmented_window(waves[i], positives[i], window, rng, reader or None))
            targets.append(1.0 if positives[i] else 0.0)
    run.log("info", f"speech embedding front end: {len(windows)} augmented windows of {len(split.train)} training "
                    f"clips ({POSITIVE_COPIES} per positive, {NEGATIVE_COPIES} per other clip), "
                    f"{n_embeddings} embeddings of {geometry.dim} per {cfg.clip_seconds:g} s window")
    run.report("features", 0.05, None)
    clip_inputs = embed_windows(embedder, torch.stack(windows), device, run.check_stop)
    clip_targets = torch.tensor(targets)
    del windows

    def embedded(parts: Sequence[BackgroundPart], budget: float) -> list[torch.Tensor]:
        streams, left = [], budget
        for part in parts:
            seconds = min(part.seconds, left)
            if seconds <= 0:
                break
            left -= seconds
            blocks = read_blocks(part.clip.path, features.sample_rate, start_seconds=part.start,
                                 end_seconds=part.start + seconds)
            streams.append(stream_embeddings(blocks, embedder, geometry, window, device, run.check_stop)[0])
            run.report("features", 0.05 + 0.9 * (1 - left / budget), None)
        return streams

    background_train = embedded(roles.train, TRAIN_BACKGROUND_SECONDS) if roles and roles.train else []
    bank = WindowBank(clip_inputs, background_train, n_embeddings)
    validation_streams = embedded(roles.validation, VALIDATION_SECONDS) if roles and roles.validation else []
    val_positive_indices = [i for i in split.val if positives[i]]
    val_clip_windows = [embed_windows(embedder, clip_windows(waves[i], window, geometry.hop), device)
                        for i in split.val]
    val_inputs = torch.stack([embedded_clip[0] for embedded_clip in val_clip_windows])
    val_targets = run.targets[split.val]
    run.timings["features_seconds"] = time.monotonic() - mark
    run.log("info", f"embedded {len(clip_inputs)} clip windows, {bank.background_count} background windows "
                    f"({sum(len(s) for s in background_train) * geometry.hop_seconds / 60:.1f} min of "
                    f"{roles.sources.get('train', 'training background') if roles else 'no background'}) and "
                    f"{sum(len(s) for s in validation_streams) * geometry.hop_seconds / 60:.1f} min of validation "
                    f"audio in {run.timings['features_seconds']:.0f} s")

    # Training ---------------------------------------------------------------------------------------------
    mark = time.monotonic()
    torch.manual_seed(cfg.seed)
    head = EmbeddingHead(n_embeddings, geometry.dim, HEAD_WIDTH_PER_CHANNEL * cfg.channels, cfg.dropout).to(device)
    all_targets = torch.cat([clip_targets, torch.zeros(bank.background_count)])
    loss_fn = run.task.loss_function(clip_targets, run.labels, cfg, device)  # validation clips: the task's loss
    sample_weights = group_weights(clip_targets, bank.background_count, cfg.negative_weight).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(bank) // HEAD_BATCH)
    scheduler = trainer.one_cycle(optimizer, cfg.learning_rate, cfg.epochs * steps_per_epoch)
    scaler = GradScaler(device)
    run.precision = precision_name(device)  # bf16/fp16 autocast on CUDA as the other networks; fp32 on the CPU
    generator = torch.Generator().manual_seed(cfg.seed)
    clock = trainer.TrainingClock(cfg.epochs)
    bank.to(device)
    targets_device = all_targets.to(device)

    def validate(candidate: nn.Module) -> dict[str, Any]:
        candidate.eval()
        with torch.no_grad():
            outputs = candidate(val_inputs.to(device)).float()
            record = {"val_loss": float(loss_fn(outputs, val_targets.to(device))),
                      **run.task.epoch_metrics(outputs, val_targets)}
        if val_positive_indices and validation_streams:
            clip_scores = []
            with torch.no_grad():
                for i, embedded_clip in zip(split.val, val_clip_windows, strict=True):
                    if positives[i]:
                        scores = torch.sigmoid(candidate(embedded_clip.to(device))[:, 0].double()).cpu().numpy()
                        clip_scores.append(smoothed(scores, cfg.smoothing_hops).max())
            streams = [StreamScores(smoothed(head_scores(candidate, stream, n_embeddings, device), cfg.smoothing_hops),
                                    geometry.hop_seconds, window / features.sample_rate,
                                    len(stream) * geometry.hop_seconds) for stream in validation_streams]
            calibration = calibrate_threshold(np.array(clip_scores), streams, cfg.target_fa_per_hour,
                                              detection.REFRACTORY_SECONDS)
            record["val_frr"] = calibration.false_reject_rate
        return record

    history: list[dict[str, Any]] = []
    best = trainer._Best(trainer._AVERAGED_CHECKPOINTS if validation_streams and val_positive_indices else 1)
    for epoch in range(1, cfg.epochs + 1):
        started = time.monotonic()
        head.train()
        order = torch.randperm(len(bank), generator=generator).to(device)
        loss_sum = 0.0
        for step, start in enumerate(range(0, len(order), HEAD_BATCH), start=1):
            run.check_stop()
            batch = order[start : start + HEAD_BATCH]
            with autocast(device):
                outputs = head(bank.windows(batch)).float()
            weights = sample_weights[batch]
            loss = (nn.functional.binary_cross_entropy_with_logits(outputs[:, 0], targets_device[batch],
                                                                   reduction="none") * weights).sum() / weights.sum()
            optimizer.zero_grad(set_to_none=True)
            scaler.step(loss, optimizer)
            scheduler.step()
            loss_sum += loss.item() * len(batch)
            if step % 20 == 0:
                run.report("training", *clock.at(epoch - 1 + step / steps_per_epoch))
        record = {"epoch": epoch, "train_loss": loss_sum / len(order), **validate(head),
                  "lr": optimizer.param_groups[0]["lr"], "seconds": time.monotonic() - started}
        if trainer.end_epoch(run, best, history, head, record, clock):
            break
    best_epoch = best.restore(head, history, run.log, validate if best.average > 1 else None)
    run.averaged_epochs = best.averaged
    head.eval()
    background_count = bank.background_count
    run.timings["training_seconds"] = time.monotonic() - mark
    del bank

    # Evaluation and export --------------------------------------------------------------------------------
    mark = time.monotonic()
    run.report("evaluating", 0.0, None)
    # The log-mel baseline's input, loaded as the first half of the evaluating phase.
    powers, cache_stats = run.load_powers("evaluating", 0.5)
    log_mel_frontend = LogMelFrontend(features)
    from .augment import stack_frames

    def log_mels(indices: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return log_mel_frontend.log_mel(stack_frames([powers[i] for i in indices], features.n_frames, "center"))

    def export_model() -> ExportedModel:
        return ExportedModel(copy.deepcopy(embedder).cpu(), copy.deepcopy(head).cpu(), ScoreOutput()).eval()

    fitted = Fitted(
        cfg=cfg, labels=run.labels, clips=run.clips, split=split, targets=run.targets,
        log_mels={name: log_mels(split.indices(name)) for name in ("train", "val", "test") if split.indices(name)},
        network=head, device=device, features=features, export_model=export_model, log=run.log,
        background_roles=roles,
    )
    metrics = {**run.task.evaluate(fitted), **run.summary(head, split, history, best_epoch, cache_stats)}
    metrics["front_end"] = {"name": "speech_embedding", "embeddings_per_window": n_embeddings,
                            "embedding_dim": geometry.dim, "hop_seconds": geometry.hop_seconds,
                            "training_windows": len(clip_inputs), "background_windows": background_count}
    metrics["prediction"] = run.task.export_config(metrics, cfg)

    mark = trainer.start_export(run, metrics, mark)
    architecture = {"name": "SpeechEmbedding + EmbeddingHead", "architecture": cfg.architecture,
                    "channels": cfg.channels, "dropout": cfg.dropout, "convs_per_block": cfg.convs_per_block,
                    "width": head.width, "embeddings": n_embeddings, "embedding_dim": geometry.dim,
                    "n_parameters": metrics["n_parameters"]}
    config = build_config(run.labels, cfg.task, features, cfg.to_dict(), architecture, metrics["prediction"])
    config["best_epoch"] = best_epoch
    sample = 0.1 * torch.randn(4, window, generator=torch.Generator().manual_seed(cfg.seed))
    try:
        artifacts = write_artifacts(run.out_dir, export_model(), config, metrics, run.runtime.snapshot, sample,
                                    run.should_stop)
    except ExportCancelled:
        raise trainer.TrainingCancelled("training was cancelled during export") from None
    export_seconds = time.monotonic() - mark
    run.report("exporting", 1.0, 0.0)
    return run.result(metrics, artifacts, best_epoch, export_seconds)


def eager_model(architecture: dict[str, Any]) -> ExportedModel:
    """The exported model's eager form, for ``export.load_eager_model``."""
    return ExportedModel(frontend(), EmbeddingHead(architecture["embeddings"], architecture["embedding_dim"],
                                                   architecture["width"], architecture["dropout"]), ScoreOutput())
