"""Hard monotonic alignment search (Glow-TTS, VITS) in plain torch: no compiled extension.

Given the log-likelihood of every mel frame under every text symbol, find the path that gives each frame to one
symbol, starts at the first symbol, ends at the last, never goes back and never skips a symbol, with the highest
total log-likelihood. Dynamic programming over frames, vectorised over the batch and the symbols; then a
backtrack. O(frames x symbols) per sentence.
"""

from __future__ import annotations

import torch

_NEG = -1e9


def monotonic_alignment(log_likelihood: torch.Tensor, symbol_lengths: torch.Tensor,
                        frame_lengths: torch.Tensor) -> torch.Tensor:
    """(batch, symbols, frames) log-likelihoods -> a 0/1 path of the same shape (float), padding all zero.

    Every frame goes to exactly one symbol, and every symbol gets at least one frame (frames >= symbols is
    required, as in Glow-TTS).
    """
    with torch.no_grad():
        value = log_likelihood.detach().float().cpu()
        batch, n_symbols, n_frames = value.shape
        symbol_index = torch.arange(n_symbols)
        valid_symbol = symbol_index[None, :] < symbol_lengths.cpu()[:, None]
        value = value.masked_fill(~valid_symbol[:, :, None], _NEG)
        best = torch.full((batch, n_symbols), _NEG)
        best[:, 0] = value[:, 0, 0]
        came_from_previous = torch.zeros(batch, n_symbols, n_frames, dtype=torch.bool)
        for frame in range(1, n_frames):
            shifted = torch.cat([torch.full((batch, 1), _NEG), best[:, :-1]], dim=1)
            from_previous = shifted > best
            came_from_previous[:, :, frame] = from_previous
            best = torch.where(from_previous, shifted, best) + value[:, :, frame]
            # Symbol j cannot be reached before frame j.
            best = best.masked_fill(symbol_index[None, :] > frame, _NEG)
        return _backtrack(came_from_previous, symbol_lengths.cpu(), frame_lengths.cpu()).to(log_likelihood.device)


def _backtrack(came_from_previous: torch.Tensor, symbol_lengths: torch.Tensor,
               frame_lengths: torch.Tensor) -> torch.Tensor:
    batch, n_symbols, n_frames = came_from_previous.shape
    path = torch.zeros(batch, n_symbols, n_frames)
    moves = came_from_previous.numpy()
    for item in range(batch):
        symbol = int(symbol_lengths[item]) - 1
        for frame in range(int(frame_lengths[item]) - 1, -1, -1):
            path[item, symbol, frame] = 1.0
            if symbol > 0 and (symbol == frame or moves[item, symbol, frame]):
                symbol -= 1
    return path


def durations_from_path(path: torch.Tensor) -> torch.Tensor:
    """Frames per symbol, (batch, symbols)."""
    return path.sum(dim=2)


def is_monotonic(path: torch.Tensor, symbol_length: int, frame_length: int) -> bool:
    """One sentence's path: each frame on exactly one symbol, symbols in order, none skipped, from first to last."""
    owners = path[:symbol_length, :frame_length].argmax(dim=0)
    ones = path[:symbol_length, :frame_length].sum(dim=0)
    steps = owners[1:] - owners[:-1]
    return bool((ones == 1).all() and owners[0] == 0 and owners[-1] == symbol_length - 1
                and ((steps == 0) | (steps == 1)).all())
