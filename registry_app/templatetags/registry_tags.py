"""Template helpers for the registry panel: safe Markdown, metric differences."""

from __future__ import annotations

import re

import markdown as markdown_lib
from django import template
from django.utils.safestring import mark_safe
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

register = template.Library()

SAFE_SCHEMES = {"http", "https", "mailto"}
_IGNORED_BY_BROWSERS = re.compile(r"[\x00-\x20\x7f]")


def is_safe_url(value: str) -> bool:
    """Relative URLs and http(s)/mailto only. Browsers ignore control characters and spaces inside a scheme,
    so they are removed before looking for one."""
    cleaned = _IGNORED_BY_BROWSERS.sub("", value)
    scheme, colon, _ = cleaned.partition(":")
    if not colon or any(char in scheme for char in "/?#"):
        return True
    return scheme.lower() in SAFE_SCHEMES


class _SafeLinks(Treeprocessor):
    """Drops link and image targets with schemes such as javascript: or data:; external links get rel=noopener."""

    def run(self, root):
        for element in root.iter():
            for attribute in ("href", "src"):
                value = element.get(attribute)
                if value is not None and not is_safe_url(value):
                    del element.attrib[attribute]
            if element.tag == "a":
                element.set("rel", "nofollow noopener noreferrer")


class _NoRawHtml(Extension):
    """Raw HTML in the source is shown as text, never passed through."""

    def extendMarkdown(self, md):
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        md.treeprocessors.register(_SafeLinks(md), "safe_links", 0)


def render_markdown(text: str) -> str:
    html = markdown_lib.markdown(
        text or "", extensions=[_NoRawHtml(), "fenced_code", "tables", "sane_lists"], output_format="html"
    )
    return html


@register.filter(name="markdown")
def markdown_filter(text: str) -> str:
    return mark_safe(render_markdown(text))  # noqa: S308 - raw HTML is disabled and URLs are filtered above


@register.filter
def points(value) -> str:
    """A difference of two rates in percentage points: +2.5 pts, −1.0 pts, ±0 pts."""
    if value is None:
        return ""
    value = float(value) * 100
    if abs(value) < 0.05:
        return "±0 pts"
    return f"{'+' if value > 0 else '−'}{abs(value):.1f} pts"


@register.filter
def signed(value, decimals: int = 3) -> str:
    """A difference of two scores such as F1: +0.012, −0.250, ±0."""
    if value is None:
        return ""
    value = float(value)
    if abs(value) < 0.5 * 10 ** -int(decimals):
        return "±0"
    return f"{'+' if value > 0 else '−'}{abs(value):.{int(decimals)}f}"


@register.filter
def metric_diff(value, metric: str = "accuracy") -> str:
    """A difference of a metric between two versions: percentage points for shares (accuracy, false rejects, CER),
    three decimals for other figures (Spearman, losses), as ``training_app.ml.metrics.METRICS`` describes them."""
    from training_app.ml.metrics import METRICS

    described = METRICS.get(metric)
    return points(value) if described is None or described.share else signed(value)


@register.filter
def short_hash(value: str, length: int = 12) -> str:
    return (value or "")[: int(length)]


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None
