from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def field_value(obj, name: str):
    """A model field's value by name, with None shown as an empty string (for inline edit inputs)."""
    value = getattr(obj, name, "")
    return "" if value is None else value


@register.filter
def percent(value, digits: int = 0) -> str:
    return f"{float(value) * 100:.{int(digits)}f}%"
