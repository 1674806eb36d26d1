"""Did a reproduction give the same metrics as the job (or version) it reproduces?

Every figure a training run reports is compared, down to each epoch's losses, except what measures the
machine rather than the model: timings, feature-cache hits, the device and the thread count. On the same kind
of device with the same seed the figures are equal; a GPU's nondeterministic kernels, or another device than
the original's, may shift them slightly, which is why the device is shown beside the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Keys whose values describe the run, not the model.
IGNORED_KEYS = frozenset({"timings", "feature_cache", "device", "threads", "seconds", "trainer_log"})
# Two figures are equal when they differ by less than this (JSON round trips keep floats exact; this only
# forgives the last bit).
TOLERANCE = 1e-9


@dataclass
class Difference:
    path: str
    expected: Any
    actual: Any


@dataclass
class Comparison:
    compared: int
    differences: list[Difference] = field(default_factory=list)
    expected_device: str = ""
    actual_device: str = ""

    @property
    def match(self) -> bool:
        return self.compared > 0 and not self.differences

    def summary(self) -> str:
        if self.match:
            return f"The metrics match: all {self.compared} figures are equal."
        if not self.compared:
            return "There are no figures to compare."
        first = self.differences[0]
        return (f"The metrics differ: {len(self.differences)} of {self.compared} figures changed "
                f"(first: {first.path} {_shown(first.expected)} → {_shown(first.actual)}).")

    def as_dict(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "compared": self.compared,
            "summary": self.summary(),
            "devices": [self.expected_device, self.actual_device],
            "differences": [{"path": d.path, "expected": d.expected, "actual": d.actual} for d in self.differences],
        }


def compare_metrics(expected: dict[str, Any], actual: dict[str, Any]) -> Comparison:
    """Compare two jobs' metrics, figure by figure (see the module docstring for what is left out)."""
    left, right = dict(_leaves(expected)), dict(_leaves(actual))
    comparison = Comparison(compared=len(left.keys() | right.keys()),
                            expected_device=str(expected.get("device") or ""), actual_device=str(actual.get("device") or ""))
    for path in sorted(left.keys() | right.keys()):
        a, b = left.get(path, _MISSING), right.get(path, _MISSING)
        if not _equal(a, b):
            comparison.differences.append(Difference(path, None if a is _MISSING else a, None if b is _MISSING else b))
    return comparison


_MISSING = object()


def _leaves(value: Any, path: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            if key in IGNORED_KEYS or str(key).endswith("_seconds"):
                continue
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= TOLERANCE
    return a == b


def _shown(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)
