"""Neural network modules: the keyword-spotting CNN and the self-contained export wrapper."""

from __future__ import annotations

import math

import torch
from torch import nn

from .features import LogMelFrontend
from .text import CTC_TIME_STRIDE


def _conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class _ResidualBlock(nn.Module):
    """conv-BN-ReLU widening to ``out_channels``, then conv-BN added back (a residual pair), ReLU, optional pool."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool) -> None:
        super().__init__()
        self.entry = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.inner = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = self.entry(hidden)
        return self.pool(torch.relu(hidden + self.inner(hidden)))


class KeywordCNN(nn.Module):
    """Four conv blocks (widths c, 2c, 3c, 4c) over a log-mel image, global average pooling, linear head.

    ``convs_per_block`` 1: one conv-BN-ReLU per block; 2: a second convolution in each block on a residual path,
    which doubles the depth for about twice the compute.
    """

    def __init__(self, n_labels: int, channels: int = 24, dropout: float = 0.2, convs_per_block: int = 1) -> None:
        super().__init__()
        widths = [channels, 2 * channels, 3 * channels, 4 * channels]
        blocks: list[nn.Module] = []
        previous = 1
        for index, width in enumerate(widths):
            pool = index < len(widths) - 1
            blocks.append(_ResidualBlock(previous, width, pool) if convs_per_block > 1
                          else _conv_block(previous, width, pool))
            previous = width
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(previous, n_labels)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(batch, 1, n_mels, frames) -> logits (batch, n_labels)."""
        hidden = self.features(log_mel).mean(dim=(2, 3))
        return self.classifier(self.dropout(hidden))


class _TemporalBlock(nn.Module):
    """Two 1-D convolutions over time (the first strided), batch norm, a residual path (1x1 when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int = 9) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv1d(out_channels, out_channels, kernel, 1, kernel // 2, bias=False),
            nn.BatchNorm1d(out_channels),
        )
        self.shortcut = nn.Identity() if in_channels == out_channels and stride == 1 else nn.Sequential(
            nn.Conv1d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm1d(out_channels))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.convs(hidden) + self.shortcut(hidden))


class TemporalCNN(nn.Module):
    """Temporal convolutions (TC-ResNet, Choi et al. 2019): the mel bands are the channels of 1-D convolutions over
    time, so every layer sees the whole spectrum of a frame and three strided residual blocks of kernel 9 see about a
    second: the order of the sounds in a word, not only which sounds it has. Widths 2c, 8c/3, 4c, 16c/3
    (``channels`` c); global average pooling over time, dropout, a linear layer. About half the compute of
    ``KeywordCNN`` for the same c."""

    def __init__(self, n_labels: int, n_mels: int, channels: int = 24, dropout: float = 0.2) -> None:
        super().__init__()
        widths = [2 * channels, round(8 * channels / 3), 4 * channels, round(16 * channels / 3)]
        self.stem = nn.Sequential(nn.Conv1d(n_mels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm1d(widths[0]),
                                  nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[_TemporalBlock(widths[i], widths[i + 1], 2) for i in range(len(widths) - 1)])
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(widths[-1], n_labels)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(batch, 1, n_mels, frames) -> logits (batch, n_labels)."""
        hidden = self.blocks(self.stem(log_mel.squeeze(1)))
        return self.classifier(self.dropout(hidden.mean(dim=-1)))


class EmbeddingHead(nn.Module):
    """A sequence of speech embedding features (batch, steps, dim) -> logits: two 1-D convolutions of kernel 3 over the
    sequence (batch norm, ReLU), the mean and the maximum over time side by side, dropout, a linear layer."""

    def __init__(self, n_labels: int, dim: int = 96, width: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(dim, width, 3, padding=1), nn.BatchNorm1d(width), nn.ReLU(inplace=True),
            nn.Conv1d(width, width, 3, padding=1), nn.BatchNorm1d(width), nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * width, n_labels)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        hidden = self.convs(embeddings.transpose(1, 2))
        return self.classifier(self.dropout(torch.cat([hidden.mean(dim=-1), hidden.amax(dim=-1)], dim=1)))


# Silence added before and after a clip for the speech embedding: a 1-second clip then spans 145 of its mel frames
# (0.12 s each side was worse on the hard keyword corpus, 0.4 s no better).
EMBEDDING_PAD_SECONDS = 0.24
# The fewest embeddings' worth of samples a clip is padded to, however short.
MIN_EMBEDDINGS = 3
# The head reads the output of the speech embedding's first four convolution blocks (layers[:19]: 96 channels x 2
# mel bands every 40 ms, each over about 0.4 s), not its final 96-dim embeddings (one per 80 ms over 0.775 s): on
# the hard keyword corpus a head on those features did much better (91.5% and 95.8% alone on the two corpora, against
# 87.7% and 91.6% on the final embeddings; docs/benchmarks.md). Those layers stay frozen as shipped.
EMBEDDING_LAYERS = 19
EMBEDDING_FEATURES = 192


class SpeechEmbeddingClassifier(nn.Module):
    """Waveform (batch, samples) at 16 kHz -> logits: the clip centred in ``EMBEDDING_PAD_SECONDS`` of silence each
    side, the frozen pretrained speech embedding's log-mel and first ``EMBEDDING_LAYERS`` layers
    (``speech_embedding``: Google's speech_embedding as openWakeWord uses it), and a small trained ``EmbeddingHead``
    over the sequence of their outputs. Only the head learns; the training loop computes the frozen features once
    (``embed``) and trains the head on them."""

    inputs = "waveform"

    def __init__(self, n_labels: int, width: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        from .speech_embedding import load_front_end

        front_end = load_front_end()
        self.log_mel = front_end.log_mel
        self.layers = front_end.embedding.layers[:EMBEDDING_LAYERS]
        self.requires_grad_(False)
        self.head = EmbeddingHead(n_labels, dim=EMBEDDING_FEATURES, width=width, dropout=dropout)

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> the frozen features, (batch, steps, ``EMBEDDING_FEATURES``)."""
        from .speech_embedding import SAMPLE_RATE, samples_for_embeddings

        samples = waveform.shape[-1]
        pad = int(EMBEDDING_PAD_SECONDS * SAMPLE_RATE)
        extra = max(0, samples_for_embeddings(MIN_EMBEDDINGS) - (samples + 2 * pad))
        padded = nn.functional.pad(waveform, (pad + extra // 2, pad + extra - extra // 2))
        hidden = self.layers(self.log_mel(padded).unsqueeze(1))  # (batch, 96, steps, 2)
        return hidden.permute(0, 2, 1, 3).flatten(2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(waveform))


def network_inputs(network: nn.Module) -> str:
    """What a network is called with: "log_mel" (the log-mel image), "waveform" (the raw clip) or "both" (an
    ensemble of networks of both kinds: ``network(log_mel, waveform)``)."""
    return getattr(network, "inputs", "log_mel")


class AveragedNetworks(nn.Module):
    """Networks trained alike on the same clips, answering together.

    ``probabilities`` (classification): the output is the log of the mean of the networks' softmax probabilities, so
    the softmax after it gives exactly that mean (on the hard keyword benchmark averaging probabilities beat averaging
    logits in every pairing measured). Otherwise the mean of their outputs (logits). Two networks of different kinds
    (``conv2d+temporal``) make different mistakes, and their average is better calibrated than either, which is what
    the open-set threshold needs; it costs one training and one forward pass per network. A member that reads the
    waveform (the speech embedding's) makes the ensemble take both inputs: ``forward(log_mel, waveform)``."""

    def __init__(self, networks: list[nn.Module], probabilities: bool = False) -> None:
        super().__init__()
        self.networks = nn.ModuleList(networks)
        self.probabilities = probabilities
        self.inputs = "both" if any(network_inputs(n) == "waveform" for n in networks) else "log_mel"

    def forward(self, log_mel: torch.Tensor, waveform: torch.Tensor | None = None) -> torch.Tensor:
        outputs = torch.stack([network(waveform if network_inputs(network) == "waveform" else log_mel)
                               for network in self.networks])
        if self.probabilities:
            return torch.logsumexp(torch.log_softmax(outputs, dim=-1), dim=0) - math.log(len(self.networks))
        return outputs.mean(dim=0)


def architecture_kinds(architecture: str) -> list[str]:
    """The network kinds an ``architecture`` setting names, in training order ("conv2d+temporal": both)."""
    return architecture.split("+")


def keyword_network(n_outputs: int, n_mels: int, architecture: str = "conv2d", channels: int = 24,
                    dropout: float = 0.2, convs_per_block: int = 1, probabilities: bool = False) -> nn.Module:
    """The network an ``architecture`` names: "conv2d" (``KeywordCNN``), "temporal" (``TemporalCNN``), "embedding"
    (``SpeechEmbeddingClassifier``: a head on the frozen pretrained speech embedding), or several
    kinds joined by "+" averaged (``AveragedNetworks``; ``probabilities``: a classifier's, averaged as
    probabilities)."""
    def one(kind: str) -> nn.Module:
        if kind == "embedding":
            return SpeechEmbeddingClassifier(n_outputs)  # its own dropout (0.3, as measured)
        if kind == "temporal":
            return TemporalCNN(n_outputs, n_mels, channels, dropout)
        return KeywordCNN(n_outputs, channels, dropout, convs_per_block)

    kinds = architecture_kinds(architecture)
    return AveragedNetworks([one(kind) for kind in kinds], probabilities) if len(kinds) > 1 else one(kinds[0])


class ScoreOutput(nn.Module):
    """One logit per clip -> a score in [0, 1], shape (batch,)."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits[:, 0])


class ExportedModel(nn.Module):
    """Raw waveform (batch, clip_samples) float32 at the model's sample rate -> the task's output.

    ``output`` is the task's last step: a softmax over labels for classification, a sigmoid score for
    regression and detection.
    """

    def __init__(self, frontend: LogMelFrontend, network: KeywordCNN, output: nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.network = network
        self.output = output

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        inputs = network_inputs(self.network)
        if inputs == "waveform":
            return self.output(self.network(waveform))
        if inputs == "both":
            return self.output(self.network(self.frontend(waveform), waveform))
        return self.output(self.network(self.frontend(waveform)))


class ExportedClassifier(ExportedModel):
    """Waveform -> probabilities (batch, n_labels)."""

    def __init__(self, frontend: LogMelFrontend, network: KeywordCNN) -> None:
        super().__init__(frontend, network, nn.Softmax(dim=-1))


# Transcription (CTC) ----------------------------------------------------------------------------------------



class _SeparableBlock(nn.Module):
    """Depthwise conv over time, pointwise conv, LayerNorm over channels, GELU, residual (QuartzNet-style)."""

    def __init__(self, width: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=width)
        self.pointwise = nn.Conv1d(width, width, 1)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, width, frames) -> the same; ``mask`` (batch, 1, frames) zeroes padded frames, so a padded
        training batch sees exactly what one unpadded clip sees at inference (zeros past its end)."""
        update = self.pointwise(self.depthwise(hidden))
        update = self.norm(update.transpose(1, 2)).transpose(1, 2)
        return (hidden + self.dropout(nn.functional.gelu(update))) * mask


class SpeechCTC(nn.Module):
    """Log-mel (batch, 1, n_mels, frames) -> CTC logits (batch, out_frames, n_tokens), blank at index 0.

    Two 3x3 convolutions subsample (time by CTC_TIME_STRIDE, mel bands by 4), a linear layer projects to
    ``width``, then ``blocks`` residual time-separable convolution blocks of kernel ``kernel`` look at the
    context (each block widens the receptive field by ``kernel - 1`` output frames).
    """

    def __init__(self, n_tokens: int, n_mels: int, channels: int = 24, width: int = 192, blocks: int = 6,
                 kernel: int = 11, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=(2, CTC_TIME_STRIDE), padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1)
        reduced_mels = (n_mels + 1) // 2
        reduced_mels = (reduced_mels + 1) // 2
        self.project = nn.Linear(channels * reduced_mels, width)
        self.blocks = nn.ModuleList([_SeparableBlock(width, kernel, dropout) for _ in range(blocks)])
        self.classifier = nn.Linear(width, n_tokens)

    @staticmethod
    def output_frames(frames: torch.Tensor | int):
        """CTC frames for ``frames`` log-mel frames (the strided convolution with padding 1 and kernel 3)."""
        return (frames - 1) // CTC_TIME_STRIDE + 1

    def forward(self, log_mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        frames = self.output_frames(log_mel.shape[-1])
        if lengths is None:
            mask = torch.ones(log_mel.shape[0], 1, frames, dtype=log_mel.dtype, device=log_mel.device)
        else:
            positions = torch.arange(frames, device=log_mel.device).unsqueeze(0)
            mask = (positions < self.output_frames(lengths).unsqueeze(1)).unsqueeze(1).to(log_mel.dtype)
        # Padded frames are zeroed after every layer that could spread into them.
        hidden = nn.functional.gelu(self.conv1(log_mel)) * mask.unsqueeze(1)
        hidden = nn.functional.gelu(self.conv2(hidden)) * mask.unsqueeze(1)  # (batch, channels, mels', frames')
        batch, channels, mels, frames = hidden.shape
        hidden = self.project(hidden.permute(0, 3, 1, 2).reshape(batch, frames, channels * mels)).transpose(1, 2)
        hidden = hidden * mask
        for block in self.blocks:
            hidden = block(hidden, mask)
        return self.classifier(hidden.transpose(1, 2))


class ExportedTranscriber(nn.Module):
    """Raw waveform (batch, samples) float32 of any length >= the minimum -> CTC log-probabilities
    (batch, frames, n_tokens); index 0 is the blank, index i the vocabulary's (i-1)th symbol."""

    def __init__(self, frontend: LogMelFrontend, network: SpeechCTC) -> None:
        super().__init__()
        self.frontend = frontend
        self.network = network

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.network(self.frontend(waveform)), dim=-1)
