"""manage.py grant_role USER ROLE [ROLE ...] [--revoke] — give (or take away) viewer, trainer or approver."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from audioml.audit import Actor
from audioml.roles import ROLES, change_roles


class Command(BaseCommand):
    help = (
        "Give a user one or more roles (viewer: read, listen, download; trainer: datasets, clips and training jobs; "
        "approver: aliases, archiving versions). The panel and the API are for staff, so granting a role also makes "
        "the user staff. --revoke takes the roles away instead; with no ROLE, prints the user's roles."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("roles", nargs="*", metavar="ROLE", help=f"one of {', '.join(ROLES)}")
        parser.add_argument("--revoke", action="store_true", help="remove the roles instead of adding them")

    def handle(self, *args, username: str, roles: list[str], revoke: bool, **options):
        unknown = [role for role in roles if role not in ROLES]
        if unknown:
            raise CommandError(f"Unknown role {', '.join(unknown)}: choose from {', '.join(ROLES)}.")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named '{username}'. Create the account first (Django admin → Users → Add user).")
        if not roles:
            self.stdout.write(f"{username}: {', '.join(_roles(user)) or 'no role'}{'' if user.is_staff else ' (not staff)'}")
            return
        changes = change_roles(user, roles, remove=revoke, by=Actor.for_command("manage.py grant_role"))
        if "is_staff" in changes:
            self.stdout.write(f"{username} is now staff (the panel and the API are for staff).")
        self.stdout.write(self.style.SUCCESS(f"{username}: {', '.join(_roles(user)) or 'no role'}"))


def _roles(user) -> list[str]:
    return sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
