"""Transcription's training loop (``tasks.transcription.fit``): whole utterances of any length, CTC loss.

Steps: normalise the transcripts, split by speaker, build the character vocabulary from the training split
(characters of validation/test transcripts outside it are reported and count as errors), read every clip's mel
power once (feature cache), then train epoch by epoch on length-bucketed batches with SpecAugment and a
speed/vocal-tract warp, OneCycle learning rate, gradient clipping, and keep the epoch with the lowest
validation CER (early stopping on it). Evaluate with greedy and word-list beam decoding beside the most-frequent-transcript
reference, and export waveform -> CTC log-probabilities to .pt2 and ONNX.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.export import Dim

from .config import FeatureConfig
from .device import GradScaler, autocast, precision_name
from .export import MAX_BATCH, ExportCancelled, build_config, write_artifacts
from .features import LogMelFrontend
from .model import ExportedTranscriber, SpeechCTC
from .tasks import transcription as task
from .text import BLANK, build_vocabulary, clip_rates, encode, error_rates, out_of_vocabulary, text_steps

EVAL_BATCH = 32
GRAD_CLIP = 5.0
MAX_SPEED_CHANGE = 0.1  # speaking-rate stretch of the time axis, +-10 %
MAX_FREQ_WARP = 0.08  # vocal-tract-length warp of the mel axis, +-8 %
FREQ_MASKS, FREQ_MASK_WIDTH = 2, 6  # mel bands
TIME_MASK_EVERY, TIME_MASK_WIDTH = 50, 8  # one mask per 50 frames (0.5 s), up to 8 frames wide
WIDTH_PER_CHANNEL = 8  # the convolution blocks' width is 8 x the preset's ``channels``
BLOCKS, KERNEL = 6, 11
MAX_CLIP_ROWS = 500  # held-out clips kept with the metrics (worst first)
MAX_EXPORT_SECONDS = 600
BEAM = 8


@dataclass(frozen=True)
class Utterances:
    """Normalised transcripts and their token ids, per clip."""

    texts: list[str]
    tokens: list[list[int]]
    vocabulary: list[str]


def fit(run):
    from .train import TrainingCancelled, TrainingClock, end_epoch, one_cycle, start_export

    cfg = run.cfg
    norm = task.normalization(cfg)
    run.feature_config = FeatureConfig(clip_samples=task.MIN_SAMPLES)
    features = run.features
    split = run.split()
    texts = [norm.apply(clip.transcript) for clip in run.clips]
    vocabulary = build_vocabulary(texts[i] for i in split.train)
    data = Utterances(texts, [encode(text, vocabulary) for text in texts], vocabulary)
    run.log("info", f"transcripts {norm.describe()}; vocabulary of {len(vocabulary)} characters: "
                    f"{''.join(vocabulary)!r}")
    unknown = _out_of_vocabulary(data, split)
    if unknown["characters"]:
        run.log("warning", f"{sum(unknown['characters'].values())} characters of {len(unknown['clips'])} held-out "
                           f"transcripts are not in the training transcripts ({''.join(unknown['characters'])!r}); "
                           "the model cannot write them, so they count as errors")
    run.check_stop()

    powers, cache_stats = run.load_powers()
    run.check_stop()
    frontend = LogMelFrontend(features).to(run.device)
    network = SpeechCTC(len(vocabulary) + 1, features.n_mels, cfg.channels, WIDTH_PER_CHANNEL * cfg.channels,
                        BLOCKS, KERNEL, cfg.dropout).to(run.device)
    log_mels = [_log_mel(frontend, power.to(run.device)) for power in powers]

    generator = torch.Generator().manual_seed(cfg.seed)
    batches_per_epoch = -(-len(split.train) // cfg.batch_size)
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scaler = GradScaler(run.device)
    run.precision = precision_name(run.device)
    scheduler = one_cycle(optimizer, cfg.learning_rate, cfg.epochs * batches_per_epoch)
    clock = TrainingClock(cfg.epochs)
    mark = time.monotonic()
    history: list[dict[str, Any]] = []
    best = _Best()
    for epoch in range(1, cfg.epochs + 1):
        epoch_started = time.monotonic()
        train_loss = _train_epoch(
            run, network, frontend, powers, data, split.train, optimizer, scaler, scheduler, generator,
            lambda step: run.report("training", *clock.at(epoch - 1 + step / batches_per_epoch)))
        validation = _evaluate(network, log_mels, data, split.val, run.device)
        record = {"epoch": epoch, "train_loss": train_loss, "val_loss": validation["loss"],
                  "val_cer": validation["rates"]["cer"], "val_wer": validation["rates"]["wer"],
                  "lr": optimizer.param_groups[0]["lr"], "seconds": time.monotonic() - epoch_started}
        if end_epoch(run, best, history, network, record, clock):
            break
    best.restore(network)
    network.eval()
    run.log("info", f"best epoch {best.epoch} of {len(history)}: validation CER {best.cer:.4f}")
    run.timings["training_seconds"] = time.monotonic() - mark
    run.check_stop()

    mark = time.monotonic()
    run.report("evaluating", 0.0, None)
    evaluation = _evaluation(run, network, log_mels, data, split, unknown)
    prediction = _prediction_config(vocabulary, norm, features, evaluation)
    metrics = {**evaluation, **run.summary(network, split, history, best.epoch, cache_stats), "prediction": prediction}

    mark = start_export(run, metrics, mark)
    model = ExportedTranscriber(copy.deepcopy(frontend).cpu(), copy.deepcopy(network).cpu()).eval()
    config = _export_config(run, metrics, prediction, features)
    sample = 0.1 * torch.randn(2, features.sample_rate, generator=torch.Generator().manual_seed(cfg.seed))
    other_length = 0.1 * torch.randn(1, features.hop * 137, generator=torch.Generator().manual_seed(cfg.seed + 1))
    try:
        artifacts = write_artifacts(run.out_dir, model, config, metrics, run.runtime.snapshot, sample,
                                    run.should_stop, dynamic_shapes=_dynamic_shapes(features), checks=[other_length])
    except ExportCancelled:
        raise TrainingCancelled("training was cancelled during export") from None
    export_seconds = time.monotonic() - mark
    run.report("exporting", 1.0, 0.0)
    return run.result(metrics, artifacts, best.epoch, export_seconds)


# Data -----------------------------------------------------------------------------------------------------------

def _log_mel(frontend: LogMelFrontend, power: torch.Tensor) -> torch.Tensor:
    """(n_mels, frames) mel power -> standardised log-mel, as the exported model computes it."""
    with torch.no_grad():
        return frontend.normalize(power.unsqueeze(0))[0, 0]


def _out_of_vocabulary(data: Utterances, split) -> dict[str, Any]:
    held_out = split.val + split.test
    known = set(data.vocabulary)
    return {
        "characters": out_of_vocabulary((data.texts[i] for i in held_out), data.vocabulary),
        "clips": [i for i in held_out if set(data.texts[i]) - known],
    }


def _buckets(indices: Sequence[int], lengths: Sequence[int], batch_size: int,
             generator: torch.Generator | None) -> list[list[int]]:
    """Batches of clips of similar length (less padding): sorted by length (jittered by up to 10 % when
    training, so batches differ between epochs), cut into batches, the batches in random order."""
    if generator is None:
        order = sorted(indices, key=lambda i: lengths[i])
    else:
        jitter = (1 + 0.1 * torch.rand(len(indices), generator=generator)).tolist()
        order = [i for _, i in sorted(zip([lengths[i] * j for i, j in zip(indices, jitter, strict=True)], indices,
                                          strict=True))]
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def _padded(log_mels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([item.shape[-1] for item in log_mels])
    batch = torch.zeros(len(log_mels), 1, log_mels[0].shape[0], int(lengths.max()), device=log_mels[0].device)
    for row, item in enumerate(log_mels):
        batch[row, 0, :, : item.shape[-1]] = item
    return batch, lengths.to(batch.device)


def _ctc_loss(logits: torch.Tensor, lengths: torch.Tensor, tokens: Sequence[list[int]]) -> torch.Tensor:
    log_probs = torch.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (frames, batch, tokens), in fp32
    targets = torch.tensor([token for item in tokens for token in item], dtype=torch.long)
    target_lengths = torch.tensor([len(item) for item in tokens], dtype=torch.long)
    return nn.functional.ctc_loss(log_probs, targets.to(logits.device), SpeechCTC.output_frames(lengths),
                                  target_lengths.to(logits.device), blank=BLANK, zero_infinity=True)


# Augmentation ------------------------------------------------------------------------------------------------------

def _augmented(frontend: LogMelFrontend, power: torch.Tensor, steps: int, cfg, generator: torch.Generator) -> torch.Tensor:
    if cfg.warp:
        power = _speed_and_warp(power, steps, generator)
    log_mel = frontend.normalize(power.unsqueeze(0))[0, 0]
    if cfg.spec_augment:
        log_mel = _spec_augment(log_mel, generator)
    return log_mel


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(1, generator=generator))


def _speed_and_warp(power: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
    """Stretch time by a speaking-rate factor (never so short that the transcript no longer fits) and scale
    the mel axis from its low end (another vocal tract length), in the mel power domain."""
    n_mels, frames = power.shape
    rate = _uniform(generator, 1 - MAX_SPEED_CHANGE, 1 + MAX_SPEED_CHANGE)
    new_frames = max(2, int(round(frames * rate)))
    if SpeechCTC.output_frames(new_frames) < steps:
        new_frames = frames
    scale = _uniform(generator, 1 - MAX_FREQ_WARP, 1 + MAX_FREQ_WARP)
    warped_mels = max(2, int(round(n_mels * scale)))
    resized = nn.functional.interpolate(power[None, None], size=(warped_mels, new_frames), mode="bilinear",
                                        align_corners=False)[0, 0]
    if warped_mels >= n_mels:
        return resized[:n_mels]
    return torch.cat([resized, resized[-1:].expand(n_mels - warped_mels, new_frames)])


def _spec_augment(log_mel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Frequency and time masks set to 0 (the standardised mean)."""
    log_mel = log_mel.clone()
    n_mels, frames = log_mel.shape
    for _ in range(FREQ_MASKS):
        width = int(torch.randint(0, FREQ_MASK_WIDTH + 1, (1,), generator=generator))
        start = int(torch.randint(0, max(1, n_mels - width), (1,), generator=generator))
        log_mel[start : start + width] = 0.0
    for _ in range(max(1, frames // TIME_MASK_EVERY)):
        width = int(torch.randint(0, min(TIME_MASK_WIDTH, frames // 10) + 1, (1,), generator=generator))
        start = int(torch.randint(0, max(1, frames - width), (1,), generator=generator))
        log_mel[:, start : start + width] = 0.0
    return log_mel


# Training and evaluation --------------------------------------------------------------------------------------------

def _train_epoch(run, network: SpeechCTC, frontend: LogMelFrontend, powers: Sequence[torch.Tensor], data: Utterances,
                 indices: Sequence[int], optimizer, scaler: GradScaler, scheduler, generator: torch.Generator,
                 on_step: Callable[[int], None]) -> float:
    network.train()
    lengths = [power.shape[-1] for power in powers]
    loss_sum, count = 0.0, 0
    for step, batch in enumerate(_buckets(indices, lengths, run.cfg.batch_size, generator), start=1):
        run.check_stop()
        with torch.no_grad():
            inputs, input_lengths = _padded([
                _augmented(frontend, powers[i].to(run.device), text_steps(data.texts[i]), run.cfg, generator)
                for i in batch
            ])
        with autocast(run.device):  # the convolutions in bf16/fp16 on CUDA; the CTC loss in fp32
            logits = network(inputs, input_lengths)
        loss = _ctc_loss(logits, input_lengths, [data.tokens[i] for i in batch])
        optimizer.zero_grad(set_to_none=True)
        scaler.step(loss, optimizer, clip_norm=GRAD_CLIP)
        scheduler.step()
        loss_sum += loss.item() * len(batch)
        count += len(batch)
        on_step(step)
    return loss_sum / max(1, count)


def greedy_hypotheses(network: SpeechCTC, log_mels: Sequence[torch.Tensor], indices: Sequence[int],
                      vocabulary: Sequence[str], device, tokens: Sequence[list[int]] | None = None
                      ) -> tuple[dict[int, str], float | None]:
    """Greedy transcripts of the clips at ``indices`` (and the mean CTC loss when ``tokens`` are given)."""
    from .text import decode

    network.eval()
    lengths = [item.shape[-1] for item in log_mels]
    hypotheses: dict[int, str] = {}
    loss_sum = 0.0
    with torch.no_grad():
        for batch in _buckets(indices, lengths, EVAL_BATCH, None):
            inputs, input_lengths = _padded([log_mels[i].to(device) for i in batch])
            logits = network(inputs, input_lengths)
            if tokens is not None:
                loss_sum += float(_ctc_loss(logits, input_lengths, [tokens[i] for i in batch])) * len(batch)
            frame_ids = logits.argmax(dim=-1).cpu()
            frames = SpeechCTC.output_frames(input_lengths).cpu()
            for row, index in enumerate(batch):
                hypotheses[index] = decode(frame_ids[row, : int(frames[row])].tolist(), vocabulary)
    return hypotheses, (loss_sum / len(indices) if tokens is not None and indices else None)


def _evaluate(network: SpeechCTC, log_mels, data: Utterances, indices: Sequence[int], device) -> dict[str, Any]:
    hypotheses, loss = greedy_hypotheses(network, log_mels, indices, data.vocabulary, device, data.tokens)
    references = [data.texts[i] for i in indices]
    return {"loss": loss, "rates": error_rates(references, [hypotheses[i] for i in indices]),
            "hypotheses": hypotheses}


class _Best:
    """The epoch with the lowest validation CER so far (ties: lower validation loss) and its weights."""

    def __init__(self) -> None:
        self.key: tuple[float, float] = (float("inf"), float("inf"))
        self.cer, self.epoch, self.state, self.stale = float("inf"), 0, None, 0
        self.measure = "validation CER"  # what the early stop's log line says did not improve

    def update(self, network: nn.Module, record: dict[str, Any]) -> None:
        cer = record["val_cer"] if record["val_cer"] is not None else float("inf")
        key = (round(cer, 6), record["val_loss"] if record["val_loss"] is not None else float("inf"))
        if self.state is None or key < self.key:
            improved = self.state is None or cer < self.cer - 1e-6
            self.key, self.cer, self.epoch = key, cer, record["epoch"]
            self.state = copy.deepcopy(network.state_dict())
            self.stale = 0 if improved else self.stale + 1
        else:
            self.stale += 1

    def restore(self, network: nn.Module) -> None:
        if self.state is not None:
            network.load_state_dict(self.state)


def _evaluation(run, network: SpeechCTC, log_mels, data: Utterances, split, unknown: dict[str, Any]) -> dict[str, Any]:
    """Greedy and word-list beam decoding on the held-out splits; the decoder with the lower validation WER is
    the one predictions use, and its figures are the headline."""
    evaluated_on = "test" if split.test else "val"
    results: dict[str, Any] = {"task": run.cfg.task, "labels": [], "evaluated_on": evaluated_on, "seed": run.cfg.seed}
    lexicon = sorted({word for i in split.train for word in data.texts[i].split()})
    names = [name for name in ("val", "test") if split.indices(name)]
    hypotheses = {name: _decoded(network, log_mels, split.indices(name), data.vocabulary, lexicon, run) for name in names}
    decoders: dict[str, Any] = {}
    for decoder in ("greedy", "lexicon_beam"):
        decoders[decoder] = {name: error_rates([data.texts[i] for i in split.indices(name)],
                                               [hypotheses[name][decoder][i] for i in split.indices(name)])
                             for name in names}
    chosen = "lexicon_beam" if decoders["lexicon_beam"]["val"]["wer"] < decoders["greedy"]["val"]["wer"] else "greedy"
    results["decoders"] = {"chosen": chosen, "words": len(lexicon), "beam": BEAM, **decoders}
    results["lexicon"] = lexicon
    results["val"] = decoders[chosen]["val"]
    results["test"] = decoders[chosen].get("test")
    results["cer"] = results[evaluated_on]["cer"]
    results["wer"] = results[evaluated_on]["wer"]
    results["reference"] = _most_frequent_reference(data, split, evaluated_on)
    results["clips"] = _clip_rows(run, data, split.indices(evaluated_on), hypotheses[evaluated_on][chosen])
    results["vocabulary"] = data.vocabulary
    results["normalization"] = {**task.normalization(run.cfg).to_dict(),
                                "description": task.normalization(run.cfg).describe()}
    results["out_of_vocabulary"] = {"characters": unknown["characters"],
                                    "clips": [run.clips[i].id for i in unknown["clips"]]}
    reference, greedy, beam = results["reference"], decoders["greedy"][evaluated_on], decoders["lexicon_beam"][evaluated_on]
    run.log("info", f"{evaluated_on} CER {results['cer']:.3f}, WER {results['wer']:.3f} with {chosen} decoding "
                    f"(greedy: CER {greedy['cer']:.3f}, WER {greedy['wer']:.3f}; beam over {len(lexicon)} training "
                    f"words: CER {beam['cer']:.3f}, WER {beam['wer']:.3f}; most frequent transcript: "
                    f"CER {reference['cer']:.3f}, WER {reference['wer']:.3f})")
    return results


def _decoded(network: SpeechCTC, log_mels, indices: Sequence[int], vocabulary: list[str], lexicon: list[str],
             run) -> dict[str, dict[int, str]]:
    """Each clip's transcript by greedy decoding and by beam search over the training words."""
    from .text import beam_search, decode, emissions_text

    network.eval()
    lengths = [item.shape[-1] for item in log_mels]
    decoded: dict[str, dict[int, str]] = {"greedy": {}, "lexicon_beam": {}}
    with torch.no_grad():
        for batch in _buckets(indices, lengths, EVAL_BATCH, None):
            run.check_stop()
            inputs, input_lengths = _padded([log_mels[i].to(run.device) for i in batch])
            log_probs = torch.log_softmax(network(inputs, input_lengths), dim=-1).cpu().numpy()
            frames = SpeechCTC.output_frames(input_lengths).cpu().tolist()
            for row, index in enumerate(batch):
                clip_log_probs = log_probs[row, : frames[row]]
                decoded["greedy"][index] = decode(clip_log_probs.argmax(axis=-1).tolist(), vocabulary)
                decoded["lexicon_beam"][index] = emissions_text(beam_search(clip_log_probs, vocabulary, lexicon, BEAM),
                                                                vocabulary)
    return decoded


def _most_frequent_reference(data: Utterances, split, evaluated_on: str) -> dict[str, Any]:
    most_common = Counter(data.texts[i] for i in split.train).most_common(1)[0][0]
    references = [data.texts[i] for i in split.indices(evaluated_on)]
    return {"description": f"every clip transcribed as the most frequent training transcript ({most_common!r})",
            "text": most_common, **error_rates(references, [most_common] * len(references))}


def _clip_rows(run, data: Utterances, indices: Sequence[int], hypotheses: dict[int, str]) -> list[dict[str, Any]]:
    """Held-out clips, worst first (CER, then WER), with reference and hypothesis."""
    rows = []
    for index in indices:
        clip = run.clips[index]
        rows.append({"id": clip.id, "speaker": clip.speaker, "duration": round(clip.duration, 3),
                     "reference": data.texts[index], "hypothesis": hypotheses[index],
                     **{key: round(value, 4) for key, value in clip_rates(data.texts[index], hypotheses[index]).items()}})
    rows.sort(key=lambda row: (-row["cer"], -row["wer"], str(row["id"])))
    return rows[:MAX_CLIP_ROWS]


# Export ---------------------------------------------------------------------------------------------------------

def _prediction_config(vocabulary: list[str], norm, features: FeatureConfig, evaluation: dict[str, Any]
                       ) -> dict[str, Any]:
    from .text import CTC_TIME_STRIDE

    chosen = evaluation["decoders"]["chosen"]
    return {
        "decoding": chosen,
        **({"lexicon": evaluation["lexicon"], "beam": BEAM} if chosen == "lexicon_beam" else {}),
        "vocabulary": vocabulary,
        "normalization": norm.to_dict(),
        "blank": BLANK,
        "hop": features.hop,
        "frame_seconds": features.hop * CTC_TIME_STRIDE / features.sample_rate,
        "min_samples": task.MIN_SAMPLES,
        "segment_seconds": task.SEGMENT_SECONDS,
    }


def _dynamic_shapes(features: FeatureConfig) -> dict[str, dict[int, Any]]:
    hops = Dim("hops", min=task.MIN_SAMPLES // features.hop, max=MAX_EXPORT_SECONDS * features.sample_rate // features.hop)
    return {"waveform": {0: Dim("batch", min=1, max=MAX_BATCH), 1: features.hop * hops}}


def _export_config(run, metrics: dict[str, Any], prediction: dict[str, Any], features: FeatureConfig) -> dict[str, Any]:
    cfg = run.cfg
    architecture = {"name": "SpeechCTC", "channels": cfg.channels, "width": WIDTH_PER_CHANNEL * cfg.channels,
                    "blocks": BLOCKS, "kernel": KERNEL, "dropout": cfg.dropout,
                    "n_parameters": metrics["n_parameters"]}
    config = build_config([], cfg.task, features, cfg.to_dict(), architecture, prediction)
    config["input"] = {
        "name": "waveform", "dtype": "float32", "shape": ["batch", "samples"],
        "preprocessing": f"mono, resampled to sample_rate, values in [-1, 1]; zero-padded at the end to at least "
                         f"{task.MIN_SAMPLES} samples and to a multiple of {features.hop} (the hop)",
    }
    config["output"] = {"name": task.OUTPUT_NAME, "dtype": "float32", "shape": ["batch", "frames", "tokens"],
                        "meaning": "CTC log-probabilities; token 0 is the blank, token i is vocabulary[i - 1]",
                        "frame_seconds": prediction["frame_seconds"]}
    config["vocabulary"] = prediction["vocabulary"]
    config["normalization"] = prediction["normalization"]
    config["best_epoch"] = metrics["best_epoch"]
    return config
