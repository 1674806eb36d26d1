"""`manage.py reproduce NAME:VERSION [--wait | --now]`: train a version's frozen snapshot again with its
configuration, and say whether the metrics match (exit 4 when they differ)."""

from __future__ import annotations

from django.core.management.base import CommandError

from audioml.audit import Actor
from audioml.errors import DomainError
from registry_app.management.commands.predict import parse_target
from registry_app.models import RegisteredModel
from training_app.management.commands.train import Command as TrainCommand


class Command(TrainCommand):
    help = (
        "Train a registered version's frozen data snapshot again with exactly its configuration (seed included). "
        "NAME:VERSION (3 or v3) or NAME@ALIAS names the version. Prints the new job's id; --wait follows it, --now "
        "trains here. Once it succeeds it is the model's next version, and the JSON printed says whether its "
        "metrics match (exit 4 when they differ, 1 when it fails)."
    )

    def add_arguments(self, parser):
        parser.add_argument("target", help="NAME:VERSION or NAME@ALIAS")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--wait", action="store_true", help="follow the job until it finishes")
        mode.add_argument("--now", action="store_true", help="train in this process instead of a worker")

    def handle(self, *args, target: str, wait: bool, now: bool, **options) -> None:
        name, ref = parse_target(target)
        if ref is None:
            raise CommandError(f"{target!r}: name a version (NAME:3) or an alias (NAME@production)")
        model = RegisteredModel.objects.filter(name=name).first()
        if model is None:
            raise CommandError(f"No registered model named '{name}'.")
        try:
            version, _ = model.resolve(ref)
        except DomainError as error:
            raise CommandError(error.detail) from None
        self.reproduce(version.job, now=now, wait=wait, actor=Actor.for_command("manage.py reproduce"))
