"""`manage.py synthesize NAME[@ALIAS|:VERSION] "text" -o out.wav`: speak text with a registered voice."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audioml.errors import DomainError
from registry_app.management.commands.predict import parse_target
from registry_app.models import RegisteredModel


class Command(BaseCommand):
    help = (
        "Speak text with a registered voice (a synthesis model) and write a 16-bit mono WAV. NAME uses the "
        "production alias (else the latest active version); NAME@ALIAS an alias; NAME:VERSION a version. Long "
        "text is split into sentences. Prints one JSON line (file, seconds, model, version, ref)."
    )

    def add_arguments(self, parser):
        parser.add_argument("target", help="NAME, NAME@ALIAS or NAME:VERSION")
        parser.add_argument("text", help="what to say ('-' reads it from standard input)")
        parser.add_argument("-o", "--output", type=Path, required=True, help="the WAV file to write")

    def handle(self, *args, target: str, text: str, output: Path, **options):
        from registry_app import synthesis

        name, ref = parse_target(target)
        model = RegisteredModel.objects.filter(name=name).first()
        if model is None:
            known = ", ".join(RegisteredModel.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(f"No registered model named {name!r} (models: {known}).")
        if text == "-":
            text = self.stdin.read() if hasattr(self, "stdin") else __import__("sys").stdin.read()
        try:
            speech = synthesis.synthesize(model, text, ref)
        except DomainError as error:
            raise CommandError(error.detail) from None
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(speech.wav)
        self.stdout.write(json.dumps({"file": str(output), "seconds": round(speech.seconds, 3),
                                      "sentences": speech.sentences, "model": speech.model,
                                      "version": speech.version, "ref": speech.ref}))
