"""Small server-rendered SVG charts for the statistics page (no JavaScript, no CDN)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PRIMARY = "#4f46e5"
WARN = "#d97706"
AXIS = "#98a2b3"
GRID = "#eaecf0"
TEXT = "#475467"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _count_ticks(maximum: int, most: int = 5) -> list[int]:
    """Whole-number ticks from 0 to at least ``maximum`` (a count) with the smallest round step (1, 2, 5, 10, 20,
    25, 50…) that needs at most ``most`` intervals: never 1.25 clips."""
    maximum, magnitude = max(int(maximum), 1), 1
    while True:
        for multiple in (1, 2, 2.5, 5):
            step = multiple * magnitude
            if step % 1 == 0 and math.ceil(maximum / step) <= most:
                return [int(step * i) for i in range(math.ceil(maximum / step) + 1)]
        magnitude *= 10


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


# Each chart is drawn twice: 640 units wide, and NARROW_WIDTH wide for a phone's card (about 320 px), where the
# wide drawing's text would shrink to 6 px. The page shows one by the width of its box (static/app.css).
NARROW_WIDTH = 340


def hbar_chart(
    rows: Sequence[tuple[str, int]],
    *,
    highlight: Callable[[str, int], bool] | None = None,
    threshold: int | None = None,
    threshold_label: str = "",
    title: str = "",
) -> SafeString:
    """Horizontal bars, one row per (name, count); highlighted rows in amber; an optional dashed threshold."""
    if not rows:
        return mark_safe("")
    options = {"highlight": highlight, "threshold": threshold, "threshold_label": threshold_label, "title": title}
    return mark_safe(_hbar_svg(rows, **options, width=640, label_width=170, name_chars=24, drawing="chart-wide")
                     + _hbar_svg(rows, **options, width=NARROW_WIDTH, label_width=108, name_chars=15,
                                 drawing="chart-narrow"))


def _hbar_svg(rows, *, highlight, threshold, threshold_label, title, width, label_width, name_chars, drawing) -> str:
    row_height, right_pad, top = 26, 56, 22 if threshold else 6
    height = top + row_height * len(rows) + 8
    maximum = _nice_max(max(max(count for _, count in rows), threshold or 0))
    plot = width - label_width - right_pad
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" {FONT} font-size="12" '
        f'class="{drawing}" xmlns="http://www.w3.org/2000/svg">'
    ]
    if title:
        parts.append(f"<title>{escape(title)}</title>")
    for index, (name, count) in enumerate(rows):
        y = top + index * row_height
        bar = 0 if maximum == 0 else plot * count / maximum
        color = WARN if highlight and highlight(name, count) else PRIMARY
        shown = name if len(name) <= name_chars else name[:name_chars - 1] + "…"
        parts.append(
            f'<g><title>{escape(name)}: {count:,}</title>'
            f'<text x="{label_width - 8}" y="{y + 17}" text-anchor="end" fill="{TEXT}">{escape(shown)}</text>'
            f'<rect x="{label_width}" y="{y + 5}" width="{plot}" height="16" rx="4" fill="{GRID}"/>'
            f'<rect x="{label_width}" y="{y + 5}" width="{max(bar, 2 if count else 0):.1f}" height="16" rx="4" fill="{color}"/>'
            f'<text x="{label_width + bar + 6:.1f}" y="{y + 17}" fill="{TEXT}" font-weight="600">{count:,}</text></g>'
        )
    if threshold:
        x = label_width + plot * threshold / maximum
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 4}" stroke="{WARN}" stroke-dasharray="4 3"/>'
            f'<text x="{x:.1f}" y="12" text-anchor="middle" fill="{WARN}" font-size="11">{escape(threshold_label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram_chart(
    bins: Sequence[dict],
    *,
    x_label: str,
    unit: str = "",
    highlight: Callable[[dict], bool] | None = None,
    label_every: int | None = None,
    title: str = "",
) -> SafeString:
    """Vertical bars for histogram bins ({start, end, count}); x labels at bin edges, a y axis with counts."""
    if not bins:
        return mark_safe("")
    options = {"x_label": x_label, "unit": unit, "highlight": highlight, "title": title}
    every = label_every or max(1, math.ceil(len(bins) / 8))
    return mark_safe(_histogram_svg(bins, **options, every=every, width=640, height=230, drawing="chart-wide")
                     + _histogram_svg(bins, **options, every=every * 2 if len(bins) > 4 * every else every,
                                      width=NARROW_WIDTH, height=210, drawing="chart-narrow"))


def _histogram_svg(bins, *, x_label, unit, highlight, title, every, width, height, drawing) -> str:
    left, right, top, bottom = 44, 12, 12, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = _count_ticks(max(b["count"] for b in bins))
    maximum = ticks[-1]
    step = plot_w / len(bins)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title or x_label)}" {FONT} '
        f'font-size="11" class="{drawing}" xmlns="http://www.w3.org/2000/svg">'
    ]
    if title:
        parts.append(f"<title>{escape(title)}</title>")
    for tick in ticks:
        y = top + plot_h - plot_h * tick / maximum
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{TEXT}">{_number(tick)}</text>'
        )
    for index, entry in enumerate(bins):
        bar_h = plot_h * entry["count"] / maximum
        x = left + index * step
        color = WARN if highlight and highlight(entry) else PRIMARY
        label = f"{_edge(entry['start'])}–{_edge(entry['end'])}{unit}: {entry['count']:,} clip{'s' if entry['count'] != 1 else ''}"
        parts.append(
            f'<g><title>{escape(label)}</title>'
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - bar_h:.1f}" width="{max(step - 2, 1):.1f}" height="{bar_h:.1f}" '
            f'rx="2" fill="{color}"/>'
            f'<rect x="{x:.1f}" y="{top}" width="{step:.1f}" height="{plot_h}" fill="transparent"/></g>'
        )
    for index in range(0, len(bins) + 1, every):
        x = left + index * step
        edge = bins[index]["start"] if index < len(bins) else bins[-1]["end"]
        parts.append(
            f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" stroke="{AXIS}"/>'
            f'<text x="{x:.1f}" y="{top + plot_h + 17}" text-anchor="middle" fill="{TEXT}">{escape(_edge(edge))}</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="{AXIS}"/>'
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="{TEXT}" font-size="12">'
        f"{escape(x_label)}</text></svg>"
    )
    return "".join(parts)


def _edge(value: float) -> str:
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")
