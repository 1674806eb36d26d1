"""The synthesis networks (only nn.Modules): a text encoder with a duration predictor, a mel decoder, the
Griffin-Lim vocoder, and the exported text-ids-in, waveform-out module.

The encoder gives every symbol a hidden vector and a mean mel frame (``prior``); training aligns the real mel
frames to the symbols with monotonic alignment search over the prior's likelihood (alignment.py), so no
attention and no external aligner is needed. The decoder turns the symbol vectors, repeated for their
durations, into mel frames.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn


class ConvBlock(nn.Module):
    """Conv1d -> ReLU -> LayerNorm over channels -> dropout, with a residual connection; padding stays zero."""

    def __init__(self, channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x * mask))
        y = self.norm(y.transpose(1, 2)).transpose(1, 2)
        return (x + self.dropout(y)) * mask


class TextEncoder(nn.Module):
    def __init__(self, n_symbols: int, channels: int, n_mels: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_symbols, channels, padding_idx=0)
        self.blocks = nn.ModuleList(ConvBlock(channels, 5, dropout) for _ in range(layers))
        self.prior = nn.Conv1d(channels, n_mels, 1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (batch, symbols), mask (batch, 1, symbols) -> hidden (batch, channels, symbols), prior means
        (batch, n_mels, symbols)."""
        x = self.embedding(ids).transpose(1, 2) * mask
        for block in self.blocks:
            x = block(x, mask)
        return x, self.prior(x) * mask


class DurationPredictor(nn.Module):
    """log(1 + frames) per symbol from the (detached) encoder output."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ConvBlock(channels, 3, dropout) for _ in range(2))
        self.out = nn.Conv1d(channels, 1, 1)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = hidden
        for block in self.blocks:
            x = block(x, mask)
        return (self.out(x) * mask).squeeze(1)


class MelDecoder(nn.Module):
    def __init__(self, channels: int, n_mels: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.inp = nn.Conv1d(channels + n_mels, channels, 1)
        self.blocks = nn.ModuleList(ConvBlock(channels, 5, dropout) for _ in range(layers))
        self.out = nn.Conv1d(channels, n_mels, 1)

    def forward(self, hidden: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Frame-rate hidden vectors and prior means -> normalised log-mel (batch, n_mels, frames); the prior
        is the starting point the decoder refines."""
        x = self.inp(torch.cat([hidden, prior], dim=1)) * mask
        for block in self.blocks:
            x = block(x, mask)
        return (prior + self.out(x)) * mask


class AcousticModel(nn.Module):
    def __init__(self, n_symbols: int, n_mels: int = 80, channels: int = 192, encoder_layers: int = 4,
                 decoder_layers: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = TextEncoder(n_symbols, channels, n_mels, encoder_layers, dropout)
        self.durations = DurationPredictor(channels, dropout)
        self.decoder = MelDecoder(channels, n_mels, decoder_layers, dropout)

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor):
        mask = sequence_mask(lengths, ids.shape[1]).unsqueeze(1).to(torch.float32)
        hidden, prior = self.encoder(ids, mask)
        log_durations = self.durations(hidden.detach(), mask)
        return hidden, prior, log_durations, mask

    def decode(self, hidden: torch.Tensor, prior: torch.Tensor, path: torch.Tensor,
               frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """path (batch, symbols, frames) -> (predicted mel, prior means at frame rate)."""
        frame_hidden = torch.bmm(hidden, path)
        frame_prior = torch.bmm(prior, path)
        return self.decoder(frame_hidden, frame_prior, frame_mask), frame_prior


def sequence_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def path_from_durations(durations: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Integer frames per symbol (batch, symbols) -> the 0/1 path (batch, symbols, n_frames)."""
    ends = torch.cumsum(durations, dim=1)
    starts = ends - durations
    frames = torch.arange(n_frames, device=durations.device)[None, None, :]
    return ((frames >= starts[:, :, None]) & (frames < ends[:, :, None])).to(torch.float32)


def predicted_durations(log_durations: torch.Tensor, mask: torch.Tensor, length_scale: float = 1.0) -> torch.Tensor:
    """Whole frames per symbol (at least one for every real symbol) from the predictor's log(1 + frames)."""
    frames = torch.round(torch.expm1(log_durations).clamp(min=0.0) * length_scale).clamp(min=1.0)
    return (frames * mask.squeeze(1)).to(torch.int64)


class GriffinLimVocoder(nn.Module):
    """Normalised log-mel -> waveform with torchaudio's mel filter bank and GriffinLim (no trained weights).

    InverseMelScale solves a least-squares problem per call with ``linalg.lstsq``, which torch.export cannot
    trace; the same minimum-norm least-squares solution is the pseudo-inverse of the filter bank, computed once.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, f_min: float, f_max: float,
                 mel_mean: float, mel_std: float, n_iter: int = 32, sharpen: float = 1.3) -> None:
        super().__init__()
        self.mel_mean, self.mel_std, self.sharpen = mel_mean, mel_std, sharpen
        filter_bank = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate)
        self.register_buffer("inverse_filter_bank", torch.linalg.pinv(filter_bank.T.double()).float())
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=n_fft, hop_length=hop, win_length=n_fft, power=1.0, n_iter=n_iter, rand_init=False)
        # The fewest frames Griffin-Lim's inverse STFT and its reflection padding accept: the waveform of
        # (frames - 1) hops must be longer than half a window.
        self.min_frames = n_fft // (2 * hop) + 2

    def forward(self, normalized_log_mel: torch.Tensor) -> torch.Tensor:
        magnitude_mel = torch.exp(normalized_log_mel * self.mel_std + self.mel_mean)
        magnitude = torch.matmul(self.inverse_filter_bank, magnitude_mel).clamp(min=0.0) ** self.sharpen
        return self.griffin_lim(magnitude).clamp(-1.0, 1.0)


class Synthesizer(nn.Module):
    """What is exported: symbol ids (1, symbols) int64 -> waveform (samples,) float32 at the model's rate."""

    def __init__(self, acoustic: AcousticModel, vocoder: GriffinLimVocoder, length_scale: float = 1.0) -> None:
        super().__init__()
        self.acoustic = acoustic
        self.vocoder = vocoder
        self.length_scale = length_scale

    def mel(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised log-mel (1, n_mels, frames), durations (1, symbols))."""
        lengths = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.int64, device=ids.device)
        hidden, prior, log_durations, mask = self.acoustic.encode(ids, lengths)
        durations = predicted_durations(log_durations, mask, self.length_scale)
        # A very short text could predict fewer frames than the vocoder accepts: the last symbol is held longer.
        # Checking the minimum afterwards also tells torch.export the frame count is large enough, which older
        # torch releases (2.11) need to trace the vocoder's padding with a data-dependent frame count.
        shortfall = (self.vocoder.min_frames - durations.sum()).clamp(min=0)
        last = torch.arange(ids.shape[1], device=ids.device) == ids.shape[1] - 1
        durations = durations + last.to(durations.dtype)[None] * shortfall
        n_frames = durations.sum().item()  # data-dependent: torch.export keeps it symbolic
        torch._check(n_frames >= self.vocoder.min_frames)
        path = path_from_durations(durations, n_frames)
        mel, _ = self.acoustic.decode(hidden, prior, path, torch.ones(1, 1, n_frames, device=ids.device))
        return mel, durations

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mel, _ = self.mel(ids)
        return self.vocoder(mel)[0]
