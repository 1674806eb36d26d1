from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """42 s, 3 min 12 s, 1 h 05 min."""
    if seconds is None or seconds == "":
        return "—"
    seconds = max(0, int(round(float(seconds))))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def percent(value, decimals: int = 1) -> str:
    """0.953 -> 95.3%."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.{int(decimals)}f}%"


@register.filter
def signed_points(value) -> str:
    """+4.2 points / -1.0 points."""
    if value is None:
        return "—"
    return f"{value:+.1f} points"


@register.filter
def setting_value(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
