"""`manage.py gc [--dry-run] [--min-age SECONDS] [--json]`: remove the media storage's files that no row
references (see audioml/sweep.py, whose media half this is), and report them by kind."""

from __future__ import annotations

import json
from collections import defaultdict

from django.conf import settings
from django.core.management.base import BaseCommand
from django.template.defaultfilters import filesizeformat

from audioml.audit import Actor
from audioml.sweep import GC_KINDS, collect_garbage


class Command(BaseCommand):
    help = (
        "Remove files in the media storage (local or S3) that no row references: clip audio no clip references "
        "(trashed clips keep theirs), model artifacts no version lists, and interrupted uploads. Files younger than "
        "SWEEP_MIN_AGE_SECONDS are left alone (an upload or a registration may be writing them). --dry-run lists "
        "what would go and removes nothing. A run that removes files is recorded in the audit trail (storage.gc). "
        "The panel's Storage page (superusers) shows the same dry run and runs it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="report what would be removed; remove nothing")
        parser.add_argument(
            "--min-age", type=float, default=None,
            help="seconds an unreferenced file must be old to go (default SWEEP_MIN_AGE_SECONDS); 0 only when "
            "nothing is uploading or training",
        )
        parser.add_argument("--json", action="store_true", help="print the report as one JSON object")

    def handle(self, *args, dry_run: bool, min_age: float | None, json: bool, verbosity: int, **options):
        report = collect_garbage(dry_run=dry_run, min_age=min_age, by=Actor.for_command("manage.py gc"))
        if json:
            self.stdout.write(_json(report.as_gc_dict()))
            return
        verb = "would remove" if dry_run else "removed"
        by_kind: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for name, size in report.media_files:
            by_kind[report.kind_of(name)].append((name, size))
        if verbosity >= 1:
            for kind in GC_KINDS:
                for name, size in by_kind.get(kind, []):
                    self.stdout.write(f"{verb} {name} ({filesizeformat(size)})")
        for kind, label in GC_KINDS.items():
            files = by_kind.get(kind, [])
            self.stdout.write(f"{label}: {len(files)} file{'s' if len(files) != 1 else ''} "
                              f"{verb} ({filesizeformat(sum(size for _, size in files))})")
        age = settings.SWEEP_MIN_AGE_SECONDS if min_age is None else min_age
        self.stdout.write(f"{report.kept_young} unreferenced file{'s' if report.kept_young != 1 else ''} younger "
                          f"than {age:g} s kept (possibly being written)")
        if dry_run:
            self.stdout.write("Dry run: nothing was removed. Run without --dry-run to remove these files.")


def _json(data) -> str:
    return json.dumps(data, indent=2)
