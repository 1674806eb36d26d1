from django.apps import AppConfig


class RegistryAppConfig(AppConfig):
    name = "registry_app"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from registry_app import receivers  # noqa: F401  (connects the signal receivers)
        from registry_app.views import job_model_link
        from training_app.views import JOB_RESULT_LINKS

        if job_model_link not in JOB_RESULT_LINKS:
            JOB_RESULT_LINKS.append(job_model_link)  # the job page's "Open model …" button
