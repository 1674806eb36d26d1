from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def seconds(value) -> str:
    """1.234 -> "1.23 s"; 75 -> "1:15"; 5400 -> "1:30:00"."""
    if value in (None, ""):
        return "—"
    value = float(value)
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    minutes, secs = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def field_value(obj, name: str):
    """A model field's value by name, with None shown as an empty string (for inline edit inputs)."""
    value = getattr(obj, name, "")
    return "" if value is None else value


@register.filter
def percent(value, digits: int = 0) -> str:
    return f"{float(value) * 100:.{int(digits)}f}%"
