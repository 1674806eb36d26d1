"""A version's model card: what it was trained on and under which terms, how, by which code, how well, from
which base, and who approved its aliases. One dict (`model_card`) feeds the card page, the API and the
Markdown download (`card_markdown`), so they never disagree."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Count
from django.urls import reverse

from audioml.templatetags.audio_format import audio_length
from datasets_app.models import Clip, Dataset
from registry_app.aliases import AliasEvent
from registry_app.models import ModelVersion

# Figures of the evaluation split worth a line on the card (the task's headline comes first anyway).
CARD_FIGURES = ("accuracy", "macro_f1", "spearman", "pearson", "mae", "rmse", "cer", "wer", "auc",
                "false_rejects", "false_accepts_per_hour", "mel_loss", "mcd", "n")
# Longest lists of clip sources on a card.
MAX_SOURCES = 12


def model_card(version: ModelVersion) -> dict[str, Any]:
    model, job = version.model, version.job
    headline = version.headline_metric()
    evaluation = version.evaluation()
    return {
        "model": model.name,
        "version": version.version,
        "ref": version.pinned_ref,
        "task": model.task,
        "task_display": model.get_task_display(),
        "status": version.status,
        "description": version.description,
        "model_description": model.description,
        "tags": list(version.tags),
        "labels": list(version.labels),
        "aliases": sorted(alias.name for alias in version.aliases.all()),
        "registered_at": version.created_at.isoformat(),
        "registered_by": _username(version.created_by),
        "datasets": _datasets(version),
        "snapshot": {
            "hash": version.snapshot_hash,
            "clips": version.snapshot_size,
            "summary": _snapshot_summary(job),
            "clip_sources": _clip_sources(job.snapshot or []),
        },
        "training": {
            "job": job.pk,
            "preset": job.preset,
            "seed": (version.train_config or {}).get("seed", (job.config or {}).get("seed")),
            "device": (version.metrics or {}).get("device") or "",
            "started_by": _username(job.created_by),
            "reproduces_job": job.reproduces_id,
        },
        "configuration": dict(sorted((version.train_config or {}).items())),
        "changed_settings": sorted((job.overrides or {}).keys()),
        "features": dict(version.feature_config or {}),
        "metrics": {
            "evaluated_on": version.evaluated_on(),
            "headline": {"name": headline[0], "value": headline[1]} if headline else None,
            "figures": {name: evaluation[name] for name in CARD_FIGURES
                        if isinstance(evaluation.get(name), (int, float)) and not isinstance(evaluation.get(name), bool)},
            "baseline": {name: value for name, value in ((version.metrics or {}).get("baseline") or {}).items()
                         if isinstance(value, (int, float)) and not isinstance(value, bool)},
        },
        "code_version": version.code_version,
        "fine_tuned_from": _base(version),
        "approvals": approvals(version),
        "reproduction": _reproduction(version),
        "reproduced_by": [{"job": row["job"].pk, "status": row["job"].status,
                           "version": row["version"].version if row["version"] else None,
                           "match": row["check"].match if row["check"] else None,
                           "summary": row["check"].summary() if row["check"] else ""}
                          for row in version.reproductions()],
        "artifacts": [{"name": entry["name"], "size": entry["size"], "sha256": entry["sha256"]}
                      for entry in version.artifacts],
    }


def _username(user) -> str | None:
    return user.get_username() if user else None


def _datasets(version: ModelVersion) -> list[dict[str, Any]]:
    """The dataset this version was trained on, then those of the versions it was fine-tuned from, in order."""
    rows, seen, current, role = [], set(), version, "trained on"
    while current is not None and current.pk not in seen:
        seen.add(current.pk)
        dataset = Dataset.objects.filter(pk=current.job.dataset_id).first()
        rows.append({
            "role": role,
            "name": dataset.name if dataset else "",
            "url": reverse("dataset-detail", args=[dataset.name]) if dataset else None,
            "description": dataset.description if dataset else "",
            "licence": dataset.licence if dataset else "",
            "source": dataset.source if dataset else "",
            "consent_note": dataset.consent_note if dataset else "",
            "snapshot": current.snapshot_hash,
            "clips": current.snapshot_size,
        })
        base = current.base_version
        role = f"{base.pinned_ref} (fine-tuning base) trained on" if base else ""
        current = base
    return rows


def _snapshot_summary(job) -> dict[str, Any]:
    summary = job.snapshot_summary()
    return {
        "clips": summary["clips"],
        "seconds": round(summary["seconds"], 1),
        "labels": [{"label": row["label"], "clips": row["clips"]} for row in summary["labels"]],
        "speakers": len(summary["speakers"]),
        "background_recordings": summary["background_recordings"],
    }


def _clip_sources(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """How many snapshot clips come from each clip source ('' = the dataset's own source), as the clips say now;
    clips deleted since are counted apart."""
    ids = [entry["id"] for entry in entries]
    counts = dict(Clip.objects.filter(pk__in=ids).values_list("source").annotate(count=Count("id")).order_by())
    kept = sum(counts.values())
    rows = sorted(({"source": source, "clips": count} for source, count in counts.items()),
                  key=lambda row: (-row["clips"], row["source"]))
    if len(rows) > MAX_SOURCES:
        rest = sum(row["clips"] for row in rows[MAX_SOURCES - 1:])
        rows = rows[:MAX_SOURCES - 1] + [{"source": f"{len(rows) - MAX_SOURCES + 1} other sources", "clips": rest}]
    if len(ids) > kept:
        rows.append({"source": "(clips deleted since)", "clips": len(ids) - kept})
    return rows


def _base(version: ModelVersion) -> dict[str, Any] | None:
    base = version.base_version
    if base is None:
        return None
    return {"ref": base.pinned_ref, "url": reverse("version-detail", args=[base.model.name, base.version])}


def _reproduction(version: ModelVersion) -> dict[str, Any] | None:
    found = version.reproduction_of()
    if found is None:
        return None
    check = found["check"]
    return {"of": found["source"].pinned_ref if found["source"] else f"job #{found['job'].pk}",
            "match": check.match if check else None, "summary": check.summary() if check else ""}


def approvals(version: ModelVersion) -> list[dict[str, Any]]:
    """Every time an alias was pointed at this version (promoted or rolled back to), oldest first."""
    events = (AliasEvent.objects.filter(to_version=version)
              .exclude(action=AliasEvent.Action.DELETE).select_related("moved_by").order_by("moved_at", "id"))
    current = {alias.name for alias in version.aliases.all()}
    return [{
        "alias": event.alias_name,
        "action": event.get_action_display(),
        "by": _username(event.moved_by) or "the system",
        "at": event.moved_at.isoformat(),
        "when": f"{event.moved_at:%Y-%m-%d %H:%M}",
        "from_version": event.from_number,
        "note": event.note,
        "current": event.alias_name in current,
    } for event in events]


# Markdown -----------------------------------------------------------------------------------------------------


def card_markdown(card: dict[str, Any]) -> str:
    lines = [f"# Model card: {card['model']} v{card['version']}", ""]
    lines.append(f"- **Task**: {card['task_display']}")
    if card["labels"]:
        lines.append(f"- **Labels**: {', '.join(card['labels'])}")
    lines.append(f"- **Status**: {card['status']}" + (f"; aliases: {', '.join(card['aliases'])}" if card["aliases"] else ""))
    lines.append(f"- **Registered**: {card['registered_at'][:16].replace('T', ' ')} UTC"
                 + (f" by {card['registered_by']}" if card["registered_by"] else ""))
    lines.append(f"- **Code version**: `{card['code_version'] or 'unknown'}`")
    if card["fine_tuned_from"]:
        lines.append(f"- **Fine-tuned from**: {card['fine_tuned_from']['ref']}")
    if card["tags"]:
        lines.append(f"- **Tags**: {', '.join(card['tags'])}")
    if card["description"]:
        lines += ["", card["description"].strip()]

    lines += ["", "## Data", ""]
    for dataset in card["datasets"]:
        lines.append(f"### {dataset['role'].capitalize()} `{dataset['name'] or '(deleted dataset)'}`")
        lines.append("")
        lines.append(f"- **Licence**: {dataset['licence'] or 'not recorded'}")
        lines.append(f"- **Source**: {dataset['source'] or 'not recorded'}")
        lines.append(f"- **Consent**: {_one_line(dataset['consent_note']) or 'not recorded'}")
        lines.append(f"- **Snapshot**: `{dataset['snapshot']}` ({dataset['clips']} clips)")
        lines.append("")
    snapshot = card["snapshot"]["summary"]
    labels = ", ".join(f"{row['label'] or '(none)'} {row['clips']}" for row in snapshot["labels"])
    lines.append(f"The snapshot holds {snapshot['clips']} clips ({audio_length(snapshot['seconds'])}) from "
                 f"{snapshot['speakers']} speakers" + (f"; per label: {labels}" if labels else "")
                 + (f"; plus {snapshot['background_recordings']} background recordings"
                    if snapshot["background_recordings"] else "") + ".")
    if card["snapshot"]["clip_sources"]:
        lines += ["", "| Clip source | Clips |", "| --- | ---: |"]
        lines += [f"| {_cell(row['source'] or '(the dataset source)')} | {row['clips']} |"
                  for row in card["snapshot"]["clip_sources"]]

    training = card["training"]
    lines += ["", "## Training", ""]
    lines.append(f"Job #{training['job']}, preset `{training['preset']}`, seed {training['seed']}"
                 + (f", on {training['device']}" if training["device"] else "")
                 + (f", reproducing job #{training['reproduces_job']}" if training["reproduces_job"] else "") + ".")
    if card["reproduction"]:
        lines += ["", f"Reproduction of {card['reproduction']['of']}: {card['reproduction']['summary']}"]
    for row in card["reproduced_by"]:
        made = f" (v{row['version']})" if row["version"] else ""
        lines += ["", f"Reproduced by job #{row['job']}{made}, {row['status']}: {row['summary'] or 'not finished'}"]
    lines += ["", "| Setting | Value |", "| --- | --- |"]
    changed = set(card["changed_settings"])
    lines += [f"| {name}{' (changed)' if name in changed else ''} | `{_cell(json.dumps(value))}` |"
              for name, value in card["configuration"].items()]

    metrics = card["metrics"]
    lines += ["", f"## Metrics ({metrics['evaluated_on']} split)", ""]
    if metrics["headline"]:
        lines.append(f"**{metrics['headline']['name']}: {_number(metrics['headline']['value'])}**")
        lines.append("")
    if metrics["figures"] or metrics["baseline"]:
        lines += ["| Figure | Value | Baseline |", "| --- | ---: | ---: |"]
        for name in dict.fromkeys([*metrics["figures"], *metrics["baseline"]]):
            lines.append(f"| {name} | {_number(metrics['figures'].get(name))} | {_number(metrics['baseline'].get(name))} |")

    lines += ["", "## Approvals", ""]
    if card["approvals"]:
        lines += ["| Alias | Action | By | When | Note |", "| --- | --- | --- | --- | --- |"]
        for row in card["approvals"]:
            action = row["action"] + (f" from v{row['from_version']}" if row["from_version"] else "")
            alias = row["alias"] + (" (current)" if row["current"] else "")
            lines.append(f"| {alias} | {action} | {row['by']} | {row['when']} UTC | {_cell(row['note'])} |")
    else:
        lines.append("No alias has pointed at this version.")

    lines += ["", "## Artifacts", "", "| File | Bytes | SHA-256 |", "| --- | ---: | --- |"]
    lines += [f"| {row['name']} | {row['size']} | `{row['sha256']}` |" for row in card["artifacts"]]
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _one_line(text: str) -> str:
    return " ".join((text or "").split())


def _cell(text: str) -> str:
    return _one_line(str(text)).replace("|", "\\|")
