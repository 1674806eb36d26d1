from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RegistryAppConfig(AppConfig):
    name = "registry_app"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from registry_app import receivers  # noqa: F401  (connects the signal receivers)
        from registry_app.views import job_artifact_url, job_model_link
        from training_app.views import JOB_ARTIFACT_URLS, JOB_RESULT_LINKS

        if job_model_link not in JOB_RESULT_LINKS:
            JOB_RESULT_LINKS.append(job_model_link)  # the job page's "Open model …" button
        if job_artifact_url not in JOB_ARTIFACT_URLS:
            JOB_ARTIFACT_URLS.append(job_artifact_url)  # a voice job's samples, played from its version

        from registry_app.models import base_choices, fetch_base, pin_base
        from training_app.fine_tune import bases

        bases.pin, bases.choices, bases.fetch = pin_base, base_choices, fetch_base  # fine-tunes start from versions

        from registry_app.prediction_log import ensure_expiry_schedule

        post_migrate.connect(ensure_expiry_schedule, sender=self, dispatch_uid="registry-log-expiry-schedule")
