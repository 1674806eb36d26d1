"""One way to write a length of audio on every page: "0.5 s", "1.5 s", "24 s", "1 min 30 s", "2 h 5 min".

A number and its unit are joined by a no-break space (NBSP), so a narrow box breaks "1 min 30 s" only between its
parts, never between "30" and "s"."""

from __future__ import annotations

from django import template

register = template.Library()
NBSP = "\u00a0"


@register.filter
def audio_length(value) -> str:
    """Seconds as people say them: tenths under 10 s (hundredths under 1 s, where a clip's length matters), whole
    seconds under a minute, then minutes and seconds, then hours and minutes; a trailing zero part is left out."""
    if value is None or value == "":
        return "—"
    seconds = max(0.0, float(value))
    if seconds < 1:
        return (f"{seconds:.2f}".rstrip("0").rstrip(".") or "0") + f"{NBSP}s"
    if seconds < 10:
        return f"{seconds:.1f}".removesuffix(".0") + f"{NBSP}s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}{NBSP}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}{NBSP}min {secs}{NBSP}s" if secs else f"{minutes}{NBSP}min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}{NBSP}h {minutes}{NBSP}min" if minutes else f"{hours}{NBSP}h"


@register.simple_tag
def background_note(count, seconds) -> str:
    """The background recordings beside a dataset's clip total, named apart on every page that sums a dataset
    up: "+ 1 background recording, 1 min"; "" when there are none. Clip counts and durations never include them."""
    count = int(count or 0)
    if not count:
        return ""
    return f"+ {count}{NBSP}background recording{'' if count == 1 else 's'}, {audio_length(seconds or 0)}"
