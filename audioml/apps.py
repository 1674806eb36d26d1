from django.apps import AppConfig


class AudiomlConfig(AppConfig):
    name = "audioml"
    verbose_name = "Accounts, API tokens and audit"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from audioml import audit  # noqa: F401 - connects the login signal receivers
        from audioml.roles import ensure_roles
        from audioml.sweep import ensure_sweep_schedule

        # After every app's migrations, so every permission exists (registry_app migrates last).
        post_migrate.connect(ensure_roles, dispatch_uid="audioml.ensure_roles")
        post_migrate.connect(ensure_sweep_schedule, sender=self, dispatch_uid="audioml.sweep_schedule")
