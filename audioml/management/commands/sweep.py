"""Remove files that no row references (what a crash leaves behind); see audioml/sweep.py."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from audioml.sweep import sweep


class Command(BaseCommand):
    help = (
        "Remove media files no row references, stale temporary upload files, zip extraction folders and "
        "incoming .part files once older than SWEEP_MIN_AGE_SECONDS; remove finished jobs' working folders; "
        "prune the feature cache to FEATURE_CACHE_MAX_BYTES."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
        parser.add_argument(
            "--min-age", type=float, default=None,
            help="seconds a file without a row must be old to go (default SWEEP_MIN_AGE_SECONDS); 0 only when "
            "nothing is uploading",
        )

    def handle(self, *args, dry_run: bool, min_age: float | None, verbosity: int, **options):
        report = sweep(dry_run=dry_run, min_age=min_age)
        if verbosity >= 2 or dry_run:
            for item in report.removed:
                self.stdout.write(("would remove " if dry_run else "removed ") + item)
        self.stdout.write(json.dumps(report.as_dict()))
