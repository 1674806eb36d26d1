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
    # The same chart drawn for a box about as narrow as a phone's card (a scaled-down wide chart's text becomes
    # unreadably small); the page shows one or the other by the box's width (static/app.css, .chart-narrow).
    narrow: Chart | None = None

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


# A phone's card is about 320 px wide: a chart drawn 340 units wide keeps its 11-unit text at about 10 px there.
NARROW_WIDTH = 340


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    percent: bool = False,
    decimals: int = 4,
    y_min: float | None = None,
    y_max: float | None = None,
    marker_x: int | None = None,
    marker_label: str = "",
    width: int = 560,
    height: int = 220,
    narrow: bool = True,
) -> Chart | None:
    """Lines over epochs 1..n, and (`narrow`) the same lines on a narrow chart as `.narrow`. Returns None when
    no series has a finite value yet."""
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
    x_step = max(1, math.ceil(nice_step(max(n - 1, 1), 5 if width > NARROW_WIDTH else 4)))
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
                         "value": f"{value * 100:.1f}%" if percent else f"{value:.{decimals}f}"})
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
    if narrow:
        chart.narrow = line_chart(series, title=title, percent=percent, decimals=decimals, y_min=y_min, y_max=y_max,
                                  marker_x=marker_x, marker_label=marker_label, width=NARROW_WIDTH, height=200,
                                  narrow=False)
    return chart


def training_charts(
    epochs: Sequence[dict], best_epoch: int | None = None, task: str = "classification"
) -> dict[str, Chart | None]:
    """The loss chart (train and validation) and the chart of the task's validation figure per epoch
    (accuracy for classification; the task module's EPOCH_METRIC)."""
    from training_app.ml.tasks import TASKS

    metric = TASKS[task].EPOCH_METRIC if task in TASKS else ("val_accuracy", "Validation accuracy", True)
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
    key, title, percent = metric
    # A task may chart several validation figures together (transcription: CER and WER).
    # The legend names the series in running text: lower-case its first letter only ("validation ROC AUC").
    series_keys = getattr(TASKS.get(task), "EPOCH_SERIES", None) or ((key, title[:1].lower() + title[1:]),)
    css_classes = ("series-acc", "series-val", "series-train")
    # An area under a curve lies in 0..1 like a share but is no share of anything: it reads as a number
    # (0.750, as on the ROC card), not as a percentage.
    area = key.endswith("_auc")
    accuracy = line_chart(
        [Series(name, [e.get(series_key) for e in epochs], css_classes[i % len(css_classes)])
         for i, (series_key, name) in enumerate(series_keys)],
        title=title,
        percent=percent and not area,
        decimals=3 if area else 4,
        y_min=0.0,
        y_max=1.0 if percent else None,
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


def scatter_chart(points: Sequence[Sequence[float]], *, title: str, x_label: str, y_label: str,
                  size: int = 280) -> dict | None:
    """Predicted-vs-true points on a square [0, 1] x [0, 1] plot with the diagonal of perfect predictions."""
    if not points:
        return None
    left, top, right, bottom = 40, 12, size - 12, size - 32
    span_x, span_y = right - left, bottom - top
    dots = [{"x": round(left + min(max(t, 0), 1) * span_x, 1), "y": round(bottom - min(max(p, 0), 1) * span_y, 1),
             "title": f"true {t:.2f}, predicted {p:.2f}"} for t, p in points]
    ticks = [{"value": f"{v:g}", "x": round(left + v * span_x, 1), "y": round(bottom - v * span_y, 1)}
             for v in (0, 0.25, 0.5, 0.75, 1)]
    return {"title": title, "width": size, "height": size, "left": left, "top": top, "right": right,
            "bottom": bottom, "dots": dots, "ticks": ticks, "x_label": x_label, "y_label": y_label}


def histogram_chart(edges: Sequence[float], counts: Sequence[int], *, title: str, x_label: str,
                    width: int = 360, height: int = 200) -> dict | None:
    """Bars of ``counts`` between consecutive ``edges``."""
    if not counts or not any(counts):
        return None
    left, top, right, bottom = 36, 12, width - 12, height - 32
    low, high, tallest = edges[0], edges[-1], max(counts)
    bar_width = (right - left) / len(counts)

    def x_of(value: float) -> float:
        return left + (value - low) / (high - low) * (right - left)

    bars = [{"x": round(left + i * bar_width + 1, 1), "width": round(bar_width - 2, 1),
             "y": round(bottom - count / tallest * (bottom - top), 1),
             "height": round(count / tallest * (bottom - top), 1),
             "title": f"{count} between {edges[i]:g} and {edges[i + 1]:g}"}
            for i, count in enumerate(counts)]
    ticks = [{"x": round(x_of(v), 1), "label": f"{v:g}"} for v in (low, (low + high) / 2, high)]
    return {"title": title, "width": width, "height": height, "left": left, "top": top, "right": right,
            "bottom": bottom, "bars": bars, "ticks": ticks, "x_label": x_label, "tallest": tallest}


def xy_chart(points: Sequence[Sequence[float]], *, title: str, x_label: str, y_label: str, log_x: bool = False,
             marker: Sequence[float] | None = None, width: int = 360, height: int = 240) -> dict | None:
    """A curve through [x, y, ...] points, y a share in [0, 1]; x linear from 0, or logarithmic (zeros drawn at
    the left edge). ``marker`` is one point to highlight (the operating point)."""
    finite = [(point[0], point[1]) for point in points
              if point[0] is not None and point[1] is not None and math.isfinite(point[0]) and math.isfinite(point[1])]
    if not finite:
        return None
    # The y axis' name sits above the plot: inside it, it covered the curve's start and the operating point, which
    # a DET curve puts in the top-left corner.
    left, top, right, bottom = 44, 24, width - 12, height - 32
    xs = [x for x, _ in finite]
    if log_x:
        positive = [x for x in xs if x > 0] or [1.0]
        low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
        high = max(high, low + 1)

        def to_unit(x: float) -> float:
            return 0.0 if x <= 0 else (math.log10(max(x, 10**low)) - low) / (high - low)

        ticks = [{"x": round(left + (p - low) / (high - low) * (right - left), 1), "label": f"{10**p:g}"}
                 for p in range(low, high + 1)]
    else:
        top_x = max(xs) or 1.0

        def to_unit(x: float) -> float:
            return x / top_x

        ticks = [{"x": round(left + f * (right - left), 1), "label": f"{f * top_x:.3g}"} for f in (0, 0.5, 1)]

    def place(x: float, y: float) -> tuple[float, float]:
        return round(left + to_unit(x) * (right - left), 1), round(bottom - min(max(y, 0), 1) * (bottom - top), 1)

    path = " ".join(f"{px},{py}" for px, py in (place(x, y) for x, y in finite))
    y_ticks = [{"y": round(bottom - f * (bottom - top), 1), "label": f"{f * 100:.0f}%"} for f in (0, 0.5, 1)]
    mark = None
    if marker is not None and marker[0] is not None and marker[1] is not None:
        mx, my = place(marker[0], marker[1])
        mark = {"x": mx, "y": my, "title": f"{x_label} {marker[0]:.3g}, {y_label} {marker[1] * 100:.1f}%"}
    return {"title": title, "width": width, "height": height, "left": left, "top": top, "right": right,
            "bottom": bottom, "path": path, "x_ticks": ticks, "y_ticks": y_ticks, "marker": mark,
            "x_label": x_label, "y_label": y_label, "y_label_y": top - 10}


def timeline_chart(prediction: dict, width: int = 560, height: int = 160, narrow: bool = True) -> dict | None:
    """A detection prediction's score over time: the line (each window's score at the window's middle, a dot per
    window when there are few), the threshold, the part of the line above it, and the events in a lane of their
    own above the plot (a band over the whole plot hid the line when an event spans most of a short clip); and
    (`narrow`) the same on a narrow chart as "narrow"."""
    timeline = prediction.get("scores_over_time") or {}
    scores = timeline.get("scores") or []
    if not scores:
        return None
    lane_top, lane_height = 4, 10
    left, top, right, bottom = 48, 24, width - 10, height - 28  # room for the "event" lane label
    duration = max(prediction.get("duration") or 0.0, timeline["hop"] * (len(scores) - 1) + timeline["window"], 1e-6)

    def x_of(seconds: float) -> float:
        return round(left + min(seconds, duration) / duration * (right - left), 1)

    def y_of(score: float) -> float:
        return round(bottom - min(max(score, 0.0), 1.0) * (bottom - top), 1)

    # Each score is drawn at the middle of its window.
    points = [(x_of(i * timeline["hop"] + timeline["window"] / 2), y_of(s)) for i, s in enumerate(scores)]
    path = " ".join(f"{x},{y}" for x, y in points)
    # A clip as short as one window has a single score: a line through one point draws nothing, so dot it.
    dots = [{"x": x, "y": y} for x, y in points] if len(points) == 1 else []
    samples = [{"x": x, "y": y, "title": f"{i * timeline['hop'] + timeline['window'] / 2:.2f} s: score {score:.3f}"}
               for i, ((x, y), score) in enumerate(zip(points, scores, strict=True))] if 1 < len(points) <= 60 else []
    events = [{"x": x_of(e["start"]), "width": max(2.0, x_of(e["end"]) - x_of(e["start"])),
               "title": f"detected {e['start']:.2f}-{e['end']:.2f} s, score {e['score']:.3f}"}
              for e in prediction.get("events", [])]
    step = nice_step(duration, 5 if width > NARROW_WIDTH else 3)
    ticks, tick = [], 0.0
    while tick <= duration + 1e-9:
        ticks.append({"x": x_of(tick), "label": f"{tick:g} s"})
        tick += step
    return {"width": width, "height": height, "left": left, "top": top, "right": right, "bottom": bottom,
            "path": path, "dots": dots, "samples": samples, "threshold_y": y_of(prediction.get("threshold", 0.5)),
            "events": events, "ticks": ticks, "lane_top": lane_top, "lane_height": lane_height,
            "y_ticks": [{"y": y_of(v), "label": f"{v:g}"} for v in (0, 0.5, 1)],
            "narrow": timeline_chart(prediction, NARROW_WIDTH, height, narrow=False) if narrow else None}


def transcript_diff(reference: str, hypothesis: str) -> dict[str, list[dict[str, Any]]]:
    """Word-level differences for the held-out clips table: the reference's words with deleted or replaced
    ones marked, and the hypothesis's words with inserted or replacing ones marked."""
    from difflib import SequenceMatcher

    ref_words, hyp_words = reference.split(), hypothesis.split()
    marked: dict[str, list[dict[str, Any]]] = {"reference": [], "hypothesis": []}
    for op, i1, i2, j1, j2 in SequenceMatcher(None, ref_words, hyp_words, autojunk=False).get_opcodes():
        changed = op != "equal"
        if i2 > i1:
            marked["reference"].append({"text": " ".join(ref_words[i1:i2]), "changed": changed})
        if j2 > j1:
            marked["hypothesis"].append({"text": " ".join(hyp_words[j1:j2]), "changed": changed})
    return marked


def alignment_chart(alignment: dict[str, Any] | None, width: int = 640, height: int = 320) -> dict[str, Any] | None:
    """A voice's alignment picture: symbols (rows, top to bottom) against frames (columns), each cell shaded by
    how likely the frames are under the symbol; the hard path's boundaries are drawn over it."""
    if not alignment or not alignment.get("matrix"):
        return None
    matrix, rows, cols = alignment["matrix"], alignment["matrix_rows"], alignment["matrix_cols"]
    n_symbols, n_frames = rows[-1][1], cols[-1][1]
    left, top, bottom_margin = 8, 8, 22
    plot_w, plot_h = width - 2 * left, height - top - bottom_margin
    cells = []
    for (r0, r1), values in zip(rows, matrix, strict=True):
        for (c0, c1), value in zip(cols, values, strict=True):
            if value >= 0.02:
                cells.append({"x": round(left + plot_w * c0 / n_frames, 2), "y": round(top + plot_h * r0 / n_symbols, 2),
                              "w": round(plot_w * (c1 - c0) / n_frames, 2), "h": round(plot_h * (r1 - r0) / n_symbols, 2),
                              "opacity": round(min(1.0, value), 3)})
    path, frame = [], 0
    for index, frames in enumerate(alignment.get("durations") or []):
        y = round(top + plot_h * (index + 0.5) / n_symbols, 2)
        path.append(f"{round(left + plot_w * frame / n_frames, 2)},{y} {round(left + plot_w * (frame + frames) / n_frames, 2)},{y}")
        frame += frames
    return {"width": width, "height": height, "left": left, "top": top, "right": left + plot_w,
            "bottom": top + plot_h, "cells": cells, "path": " ".join(path), "text": alignment.get("text", ""),
            "symbols": n_symbols, "frames": n_frames, "confidence": alignment.get("path_confidence")}
