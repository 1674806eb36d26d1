"""How the audit trail page shows a recorded value (`changes` hold JSON: text, numbers, lists, objects)."""

from __future__ import annotations

from django import template

register = template.Library()

SHOWN_ITEMS = 20  # an upload of thousands of files lists thousands of clip ids: the page shows the first ones


@register.filter
def audit_value(value) -> str:
    """∅ for nothing; a list as its items separated by commas (the first SHOWN_ITEMS, then how many more); an
    object as `key: value` pairs; anything else as text."""
    if value is None:
        return "∅"
    if isinstance(value, list):
        shown = ", ".join(audit_value(item) for item in value[:SHOWN_ITEMS])
        more = len(value) - SHOWN_ITEMS
        return f"{shown} … and {more} more" if more > 0 else shown or "none"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {audit_value(item)}" for key, item in value.items()) or "none"
    return str(value)


@register.filter
def audit_object_type(object_type: str) -> str:
    from audioml.audit import object_type_name

    return object_type_name(object_type or "")
