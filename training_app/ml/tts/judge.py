"""Intelligibility of a voice, judged by a transcription model of this project (nothing downloaded).

The judge is a transcription version (``task=transcription``, ``model.pt2`` + ``config.json``) trained on the
*training* sentences of the same voice corpus. It transcribes three renderings of each held-out sentence:

- the real recording (what the judge can do at best on this speaker: its own error floor),
- Griffin-Lim of the real recording's mel (what the vocoder alone costs: the ceiling for a Griffin-Lim voice),
- the voice's synthesis from the text alone (the figure that matters).

Each is scored against the sentence's transcript, normalised as the judge was trained (CER = character edits /
reference characters, WER likewise over words, summed over the sentences). The synthetic figure reads only
beside the other two: a judge trained on one speaker's few hundred sentences is a narrow listener, so a low CER
means the words came out as that speaker says them, not that any listener would understand them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio

from ..artifacts import CONFIG_FILE, TORCH_EXPORT_FILE
from ..text import TextNormalization, error_rates

RENDERINGS = ("real", "griffin_lim", "synthesized")


@dataclass
class Judge:
    module: Any
    prediction: dict[str, Any]
    sample_rate: int
    name: str = ""

    @classmethod
    def load(cls, artifact_dir: Path | str, name: str = "") -> Judge:
        folder = Path(artifact_dir)
        config = json.loads((folder / CONFIG_FILE).read_text())
        if config.get("task") != "transcription":
            raise ValueError(f"{name or folder} is a {config.get('task')} model; a judge must be a transcription model")
        return cls(torch.export.load(folder / TORCH_EXPORT_FILE).module(), config["prediction"],
                   int(config["sample_rate"]), name)

    @property
    def normalization(self) -> TextNormalization:
        return TextNormalization(**self.prediction["normalization"])

    def transcribe(self, wave: np.ndarray | torch.Tensor, sample_rate: int) -> str:
        from ..tasks.transcription import predict_waveform

        samples = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
        if sample_rate != self.sample_rate:
            samples = torchaudio.functional.resample(samples, sample_rate, self.sample_rate)
        with torch.inference_mode():
            return predict_waveform(self.module, samples.numpy(),
                                    {"prediction": self.prediction, "sample_rate": self.sample_rate})["text"]

    def score(self, texts: Sequence[str], waves: Sequence[np.ndarray | torch.Tensor], sample_rate: int
              ) -> dict[str, Any]:
        """Corpus CER/WER of the judge's transcripts of ``waves`` against ``texts``, and each transcript."""
        norm = self.normalization
        references = [norm.apply(text) for text in texts]
        hypotheses = [self.transcribe(wave, sample_rate) for wave in waves]
        rates = error_rates(references, hypotheses)
        return {"cer": rates["cer"], "wer": rates["wer"], "sentences": rates["clips"],
                "transcripts": hypotheses}


def judge_voice(judge: Judge, texts: Sequence[str], renderings: dict[str, Sequence[np.ndarray | torch.Tensor]],
                sample_rate: int) -> dict[str, Any]:
    """``renderings`` maps a name in RENDERINGS to one waveform per text; returns each one's score and the
    judge's description (for metrics, the bench and the pages)."""
    unknown = sorted(set(renderings) - set(RENDERINGS))
    if unknown:
        raise ValueError(f"unknown renderings {unknown}; expected some of {RENDERINGS}")
    scores = {name: judge.score(texts, waves, sample_rate) for name, waves in renderings.items()}
    return {"judge": judge.name, "decoding": judge.prediction.get("decoding", "greedy"),
            "normalization": judge.normalization.describe(), "sentences": len(texts),
            **{name: {"cer": round(s["cer"], 4), "wer": round(s["wer"], 4)} for name, s in scores.items()},
            "transcripts": [{"text": text, **{name: scores[name]["transcripts"][i] for name in scores}}
                            for i, text in enumerate(texts)]}
