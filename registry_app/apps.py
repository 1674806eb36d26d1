from django.apps import AppConfig


class RegistryAppConfig(AppConfig):
    name = "registry_app"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from registry_app import receivers  # noqa: F401  (connects the signal receivers)
