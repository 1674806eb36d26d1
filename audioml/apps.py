from django.apps import AppConfig


class AudiomlConfig(AppConfig):
    name = "audioml"
    verbose_name = "Accounts and API tokens"
