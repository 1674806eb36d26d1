"""What a training run leaves behind: the artifact file names, and metrics in the form JSON can hold.

Imports neither torch nor Django: the registry reads the names in the web process, and the worker stores in
the database the same finite metrics that export.py writes to metrics.json.
"""

from __future__ import annotations

import math
from typing import Any

WEIGHTS_FILE = "weights.pt"
TORCH_EXPORT_FILE = "model.pt2"
ONNX_FILE = "model.onnx"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
SNAPSHOT_FILE = "snapshot.json"
# In the order export.py writes them.
ARTIFACT_FILES = (WEIGHTS_FILE, TORCH_EXPORT_FILE, ONNX_FILE, CONFIG_FILE, METRICS_FILE, SNAPSHOT_FILE)
# The exported models: a waveform in, probabilities out, with no training code needed.
MODEL_FILES = (TORCH_EXPORT_FILE, ONNX_FILE)


def finite_json(data: Any) -> Any:
    """Non-finite floats become null: JSON has no NaN and PostgreSQL's jsonb refuses it."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {str(key): finite_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(value) for value in data]
    return data
