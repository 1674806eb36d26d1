"""`manage.py alias NAME@ALIAS [--to V] [--split V:PERCENT | --no-split] [--shadow V | --no-shadow]`: show an
alias or change where its traffic goes, like PUT /api/models/NAME/aliases/ALIAS (the same `Alias.point`)."""

from __future__ import annotations

import json
import re

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from audioml.audit import Actor
from audioml.errors import DomainError
from registry_app.aliases import KEEP
from registry_app.models import RegisteredModel, parse_version_ref

SPLIT = re.compile(r"^v?(\d+)[:=](\d+)%?$")


class Command(BaseCommand):
    help = (
        "Show an alias (its version, split, shadow and the last moves), or point it at a version (--to), split its "
        "traffic (--split 4:10 sends 10%% to v4, sticky per caller key; --no-split) or have a version score every "
        "request in the background (--shadow 5; --no-shadow). Each change is kept in the alias history with --note "
        "and audited as the --user given (else as this command)."
    )

    def add_arguments(self, parser):
        parser.add_argument("target", help="NAME@ALIAS, e.g. keywords@production")
        parser.add_argument("--to", help="the version the alias points at (3 or v3)")
        split = parser.add_mutually_exclusive_group()
        split.add_argument("--split", help="VERSION:PERCENT, e.g. 4:10 (1-99 percent of the traffic to v4)")
        split.add_argument("--no-split", action="store_true", help="send all traffic to the alias's version")
        shadow = parser.add_mutually_exclusive_group()
        shadow.add_argument("--shadow", help="a version that scores every request in the background")
        shadow.add_argument("--no-shadow", action="store_true", help="stop shadowing")
        parser.add_argument("--note", default="", help="why (kept in the alias history)")
        parser.add_argument("--user", help="the user the change is recorded for (audit trail)")

    def handle(self, *args, target: str, to, split, no_split, shadow, no_shadow, note, user, **options):
        from registry_app.models import Alias

        name, _, alias_name = target.partition("@")
        if not alias_name:
            raise CommandError(f"{target!r}: name the alias after '@', e.g. {name}@production")
        model = RegisteredModel.objects.filter(name=name).first()
        if model is None:
            raise CommandError(f"No registered model named {name!r}.")
        actor_user = None
        if user:
            actor_user = get_user_model().objects.filter(username=user).first()
            if actor_user is None:
                raise CommandError(f"No user named {user!r}.")
        try:
            if to or split or no_split or shadow or no_shadow:
                new_split = KEEP
                if split:
                    match = SPLIT.match(split.strip().lower())
                    if not match:
                        raise CommandError(f"--split {split!r}: use VERSION:PERCENT, e.g. 4:10")
                    new_split = (self._version(model, match.group(1)), int(match.group(2)))
                elif no_split:
                    new_split = None
                new_shadow = self._version(model, shadow) if shadow else (None if no_shadow else KEEP)
                Alias.point(model, alias_name, self._version(model, to) if to else None,
                            by=Actor.for_command("manage.py alias", user=actor_user), note=note,
                            split=new_split, shadow=new_shadow)
            alias = model.aliases.select_related("version", "split_version", "shadow_version").filter(
                name=alias_name.lower()).first()
        except DomainError as error:
            raise CommandError(error.detail) from None
        if alias is None:
            raise CommandError(f"Model {name!r} has no alias {alias_name!r}; create it with --to VERSION.")
        traffic = alias.traffic()
        self.stdout.write(json.dumps({
            "model": model.name, "alias": alias.name, "version": alias.version.version,
            "percent": alias.primary_percent, "split": traffic["split"], "shadow": traffic["shadow"],
        }))
        for event in model.alias_history(alias.name)[:5]:
            self.stdout.write(f"  {event.moved_at:%Y-%m-%d %H:%M} {event} {event.traffic.get('after', '') or ''}"
                              f"{' — ' + event.note if event.note else ''}")

    @staticmethod
    def _version(model: RegisteredModel, ref: str):
        number = parse_version_ref(str(ref))
        if number is None:
            raise CommandError(f"{ref!r} is not a version number (3 or v3).")
        return model.get_version(number)
