from django.apps import AppConfig


class AudiomlConfig(AppConfig):
    name = "audioml"
    verbose_name = "Accounts, API tokens and audit"

    def ready(self) -> None:
        from audioml import audit  # noqa: F401 - connects the login signal receivers
