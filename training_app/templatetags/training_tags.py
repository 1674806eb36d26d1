from __future__ import annotations

from django import template

from audioml.templatetags.audio_format import audio_length

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """A span of time in whole seconds, written as lengths of audio are: 42 s, 3 min 12 s, 1 h 5 min."""
    if seconds is None or seconds == "":
        return "—"
    return audio_length(round(float(seconds)))


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


@register.simple_tag
def scatter_chart(points, title: str, x_label: str, y_label: str):
    """``{% scatter_chart metrics.points "Predicted vs. true" "true" "predicted" as chart %}``"""
    from training_app.charts import scatter_chart as build

    return build(points or [], title=title, x_label=x_label, y_label=y_label)


@register.simple_tag
def histogram_chart(histogram, title: str, x_label: str):
    """``{% histogram_chart metrics.residual_histogram "Residuals" "predicted − true" as chart %}``"""
    from training_app.charts import histogram_chart as build

    histogram = histogram or {}
    return build(histogram.get("edges") or [], histogram.get("counts") or [], title=title, x_label=x_label)


@register.simple_tag
def xy_chart(series, title: str, x_label: str, y_label: str, log_x: bool = False, marker=None):
    """``{% xy_chart det.curve "DET" "false accepts per hour" "false rejects" as chart %}``: a curve of
    [x, y] points (y a 0-1 share); ``marker`` [x, y] marks a chosen point."""
    from training_app.charts import xy_chart as build

    return build(series or [], title=title, x_label=x_label, y_label=y_label, log_x=log_x, marker=marker)


@register.filter
def metric_value(value, name: str = "accuracy") -> str:
    """A headline figure as it reads best: shares (accuracy, false-reject rates) in percent, correlations and
    errors with three decimals."""
    if value is None or value == "":
        return "—"
    if any(word in str(name) for word in ("accuracy", "reject", "accept", "CER", "WER")):
        return percent(value)
    return f"{float(value):.3f}"


@register.filter
def hours_minutes(hours) -> str:
    """0.0167 -> "1.0 min"; 2.5 -> "2.5 h"."""
    if hours is None:
        return "—"
    hours = float(hours)
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.1f} min"


@register.simple_tag
def timeline_chart(prediction):
    """The score over time of a detection prediction, with its threshold and events."""
    from training_app.charts import timeline_chart as build

    return build(prediction or {})


@register.simple_tag
def transcript_diff(reference: str, hypothesis: str):
    """``{% transcript_diff row.reference row.hypothesis as diff %}``: word runs marked where they differ."""
    from training_app.charts import transcript_diff as build

    return build(reference or "", hypothesis or "")


@register.filter
def visible_characters(vocabulary) -> list[str]:
    """A vocabulary's characters as shown on a page: the space as ␣."""
    return ["␣" if char == " " else char for char in vocabulary or []]


@register.filter
def split_rates(decoder, split: str) -> dict:
    """``decoders.greedy|split_rates:"test"``: one decoder's error rates on a split."""
    return (decoder or {}).get(split) or {}


@register.simple_tag
def alignment_chart(alignment):
    """``{% alignment_chart metrics.alignment as chart %}``: a voice's alignment for a held-out sentence."""
    from training_app.charts import alignment_chart as build

    return build(alignment)


@register.filter
def false_accepts_over_budget(metrics) -> bool:
    """Whether a detection job's reported false accepts per hour exceed its budget (the held-out figures when
    there are any, the calibration's otherwise)."""
    if not metrics:
        return False
    held_out = metrics.get("held_out")
    if held_out:
        return held_out.get("within_budget") is False
    return (metrics.get("calibration") or {}).get("met_budget") is False


@register.filter
def empty_setting(name: str) -> str:
    """What an empty training setting means, from its help's "empty: ..." clause ("trainer" -> "built-in"),
    else "not set"."""
    from training_app.ml.config import FIELDS

    help_text = FIELDS[name].help if name in FIELDS else ""
    return help_text.rpartition("empty: ")[2] if "empty: " in help_text else "not set"


@register.filter
def setting_tasks(name: str) -> str:
    """The tasks that read setting ``name``, space-separated for a ``data-tasks`` attribute (the new-job form hides
    a setting the chosen task ignores); "" when every task reads it. config.SETTING_TASKS is the one list."""
    from training_app.ml.config import SETTING_TASKS

    return " ".join(SETTING_TASKS.get(name, ()))
