"""`manage.py predict NAME[@ALIAS|:VERSION] FILE...`: one JSON line per file, like the predict API."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audioml.errors import DomainError
from registry_app.errors import FILE_ERRORS, UndecodableAudio
from registry_app.models import RegisteredModel


def parse_target(target: str) -> tuple[str, str | None]:
    """"keywords" -> (keywords, None); "keywords@staging" -> alias; "keywords:3" or "keywords:v3" -> version."""
    if "@" in target:
        name, ref = target.split("@", 1)
        if not ref:
            raise CommandError(f"{target!r}: name an alias after '@', e.g. {name}@production")
        return name, ref
    if ":" in target:
        name, ref = target.split(":", 1)
        if not ref:
            raise CommandError(f"{target!r}: name a version after ':', e.g. {name}:3")
        return name, ref if ref.lower().startswith("v") else f"v{ref}"
    return target, None


class Command(BaseCommand):
    help = (
        "Predict with a registered model (labels, a score or detections, by the model's task). NAME uses the production alias (else the latest "
        "active version); NAME@ALIAS an alias; NAME:VERSION a version (3 or v3). Prints one JSON line per file "
        "with the same fields as POST /api/models/NAME/predict; exits with status 1 if any file failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("target", help="NAME, NAME@ALIAS or NAME:VERSION")
        parser.add_argument("files", nargs="+", type=Path, help="audio files (any format ingestion accepts)")
        parser.add_argument("--threshold", type=float, default=None,
                            help="detection models: use this threshold (0-1) instead of the calibrated one")
        parser.add_argument("--key", default="", help="the caller (a device id): keeps it on one side of a split")

    def handle(self, *args, target: str, files: list[Path], threshold: float | None = None, key: str = "",
               **options):
        from registry_app import inference
        from registry_app.traffic import shadow_pool

        name, ref = parse_target(target)
        model = RegisteredModel.objects.filter(name=name).first()
        if model is None:
            known = ", ".join(RegisteredModel.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(f"No registered model named {name!r} (models: {known}).")
        try:
            request = inference.prepare(model, ref, threshold, key)
        except DomainError as error:
            raise CommandError(error.detail) from None
        failed = 0
        for path in files:
            try:
                if not path.is_file():
                    raise UndecodableAudio(f"{path}: no such file", file=path.name, reason="missing")
                result, decoded = inference.predict_decoded(request, *inference.decode_source(request, path, path.name))
                inference.log_and_shadow(request, result, decoded, channel="cli")
            except FILE_ERRORS as error:
                failed += 1
                result = inference.file_error(path.name, error)
            self.stdout.write(json.dumps({**result, "arm": request.arm,
                                          "shadow_version": request.shadow.version if request.shadow else None},
                                         ensure_ascii=False))
        shadow_pool.drain()  # the shadow's answers are logged before the command exits
        if failed:
            raise CommandError(f"{failed} of {len(files)} files could not be scored.", returncode=1)
