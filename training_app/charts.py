"""Server-rendered views of training results, shared by the job and model version pages: SVG line charts of
the training curves, the confusion-matrix heat map and per-class rows (no JavaScript, no chart library)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Series:
    name: str
    values: Sequence[float | None]
    css_class: str


@dataclass
class Chart:
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    lines: list[dict] = field(default_factory=list)
    y_ticks: list[dict] = field(default_factory=list)
    x_ticks: list[dict] = field(default_factory=list)
    marker: dict | None = None
    title: str = ""

    @property
    def plot_width(self) -> float:
        return self.right - self.left

    @property
    def plot_height(self) -> float:
        return self.bottom - self.top


def nice_step(span: float, target_ticks: int = 4) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about ``target_ticks`` intervals."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target_ticks
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * power:
            return multiple * power
    return 10 * power


def _format_tick(value: float, step: float, percent: bool) -> str:
    if percent:
        return f"{value * 100:.0f}%"
    decimals = max(0, -math.floor(math.log10(step)))
    if abs(step * 10**decimals - round(step * 10**decimals)) > 1e-9:
        decimals += 1  # steps such as 0.25
    return f"{value:.{decimals}f}"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    percent: bool = False,
    y_min: float | None = None,
    y_max: float | None = None,
    marker_x: int | None = None,
    marker_label: str = "",
    width: int = 560,
    height: int = 220,
) -> Chart | None:
    """Lines over epochs 1..n. Returns None when no series has a finite value yet."""
    finite = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    n = max(len(s.values) for s in series)
    low = min(finite) if y_min is None else min(y_min, min(finite))
    high = max(finite) if y_max is None else max(y_max, max(finite))
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    step = nice_step(high - low)
    low = math.floor(low / step + 1e-9) * step
    high = math.ceil(high / step - 1e-9) * step
    chart = Chart(width=width, height=height, left=48, top=12, right=width - 12, bottom=height - 28, title=title)

    def x_of(epoch: int) -> float:
        if n == 1:
            return chart.left + chart.plot_width / 2
        return chart.left + (epoch - 1) / (n - 1) * chart.plot_width

    def y_of(value: float) -> float:
        return chart.bottom - (value - low) / (high - low) * chart.plot_height

    tick = low
    while tick <= high + step / 2:
        chart.y_ticks.append({"y": round(y_of(tick), 1), "label": _format_tick(tick, step, percent)})
        tick += step
    x_step = max(1, math.ceil(nice_step(max(n - 1, 1), 5)))
    for epoch in sorted({1, *range(x_step, n + 1, x_step)}):
        chart.x_ticks.append({"x": round(x_of(epoch), 1), "label": str(epoch)})

    for s in series:
        segments, current, dots = [], [], []
        for epoch, value in enumerate(s.values, start=1):
            if value is None or not math.isfinite(value):
                if current:
                    segments.append(current)
                current = []
                continue
            point = (round(x_of(epoch), 1), round(y_of(value), 1))
            current.append(point)
            dots.append({"x": point[0], "y": point[1], "epoch": epoch,
                         "value": f"{value * 100:.1f}%" if percent else f"{value:.4f}"})
        if current:
            segments.append(current)
        chart.lines.append({
            "name": s.name,
            "css_class": s.css_class,
            "segments": [" ".join(f"{x},{y}" for x, y in segment) for segment in segments],
            "dots": dots if len(dots) <= 40 else [],
            "last": dots[-1] if dots else None,
        })
    if marker_x is not None and 1 <= marker_x <= n:
        x = round(x_of(marker_x), 1)
        near_right = x > chart.left + 0.7 * chart.plot_width
        chart.marker = {"x": x, "label": marker_label, "anchor": "end" if near_right else "start",
                        "dx": -4 if near_right else 4}
    return chart


def training_charts(epochs: Sequence[dict], best_epoch: int | None = None) -> dict[str, Chart | None]:
    """The loss chart (train and validation) and the validation accuracy chart of a job's epochs."""
    label = f"best epoch {best_epoch}" if best_epoch else ""
    loss = line_chart(
        [
            Series("training loss", [e.get("train_loss") for e in epochs], "series-train"),
            Series("validation loss", [e.get("val_loss") for e in epochs], "series-val"),
        ],
        title="Loss",
        y_min=0.0,
        marker_x=best_epoch,
        marker_label=label,
    )
    accuracy = line_chart(
        [Series("validation accuracy", [e.get("val_accuracy") for e in epochs], "series-acc")],
        title="Validation accuracy",
        percent=True,
        y_min=0.0,
        y_max=1.0,
        marker_x=best_epoch,
        marker_label=label,
    )
    return {"loss": loss, "accuracy": accuracy}


def confusion_rows(confusion: dict[str, Any] | None, fallback_labels: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows of a split's `confusion_matrix` metric ({labels, matrix}) with each cell's share of its true label
    (the heat-map shade); `fallback_labels` name the rows when the metric does not."""
    confusion = confusion or {}
    labels, matrix = confusion.get("labels") or fallback_labels, confusion.get("matrix") or []
    rows = []
    for label, counts in zip(labels, matrix, strict=False):
        total = sum(counts)
        cells = []
        for column, count in enumerate(counts):
            share = count / total if total else 0.0
            cells.append({
                "count": count, "share": share, "alpha": f"{0.08 + 0.85 * share:.2f}" if count else "0",
                "dark": share > 0.55, "correct": column < len(labels) and labels[column] == label,
            })
        rows.append({"label": label, "cells": cells, "total": total})
    return rows


def per_class_rows(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """{label, precision, recall, f1, support} per label of an evaluation split's metrics."""
    return [{"label": label, **values} for label, values in (evaluation.get("per_class") or {}).items()]
