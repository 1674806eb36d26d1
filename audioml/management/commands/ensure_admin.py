"""Make sure an administrator exists, and say how to log in. Never uses a fixed default password."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create an admin account when none exists (password from ADMIN_PASSWORD or generated) and print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.getenv("ADMIN_USERNAME", "admin"))
        parser.add_argument("--email", default=os.getenv("ADMIN_EMAIL", ""))

    def handle(self, *args, username: str, email: str, **options):
        User = get_user_model()
        existing = User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if existing is not None:
            self.stdout.write(
                f"Log in as '{existing.get_username()}' with the password set earlier "
                f"(forgot it? python manage.py changepassword {existing.get_username()})."
            )
            return
        password = os.getenv("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        if os.getenv("ADMIN_PASSWORD"):
            try:
                validate_password(password, User(username=username, email=email))
            except ValidationError as error:
                raise CommandError(
                    "ADMIN_PASSWORD is not accepted: " + " ".join(error.messages)
                    + " Choose a stronger one, or unset ADMIN_PASSWORD to have one generated."
                ) from None
        User.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(self.style.SUCCESS(f"Created the admin account '{username}'."))
        if os.getenv("ADMIN_PASSWORD"):
            self.stdout.write("Log in with the password from ADMIN_PASSWORD.")
        else:
            self.stdout.write(f"Log in with username '{username}' and password: {password}")
            self.stdout.write("This password is shown only now; change it with: python manage.py changepassword admin")
