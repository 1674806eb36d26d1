"""Neural network modules: the keyword-spotting CNN and the self-contained export wrapper."""

from __future__ import annotations

import torch
from torch import nn

from .features import LogMelFrontend


def _conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class KeywordCNN(nn.Module):
    """Four conv blocks (widths c, 2c, 3c, 4c) over a log-mel image, global average pooling, linear head."""

    def __init__(self, n_labels: int, channels: int = 24, dropout: float = 0.2) -> None:
        super().__init__()
        widths = [channels, 2 * channels, 3 * channels, 4 * channels]
        blocks = []
        previous = 1
        for index, width in enumerate(widths):
            blocks.append(_conv_block(previous, width, pool=index < len(widths) - 1))
            previous = width
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(previous, n_labels)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(batch, 1, n_mels, frames) -> logits (batch, n_labels)."""
        hidden = self.features(log_mel).mean(dim=(2, 3))
        return self.classifier(self.dropout(hidden))


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
        return self.output(self.network(self.frontend(waveform)))


class ExportedClassifier(ExportedModel):
    """Waveform -> probabilities (batch, n_labels)."""

    def __init__(self, frontend: LogMelFrontend, network: KeywordCNN) -> None:
        super().__init__(frontend, network, nn.Softmax(dim=-1))
