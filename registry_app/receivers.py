"""Signal receivers of the registry."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from registry_app import artifacts as artifact_store
from registry_app.models import ModelVersion, RegisteredModel
from training_app.signals import job_requested


@receiver(job_requested, dispatch_uid="registry_refuse_other_task")
def refuse_other_task(sender, model_name: str, task: str, **kwargs) -> None:
    """Refuse a job before it is queued when its model already holds versions of another task (409)."""
    existing = RegisteredModel.objects.filter(name=model_name).first()
    if existing is not None:
        existing.check_task(task)


@receiver(post_delete, sender=ModelVersion, dispatch_uid="registry_delete_version_files")
def delete_version_files(sender, instance: ModelVersion, **kwargs) -> None:
    """A deleted version's artifacts leave the storage once the deletion is committed."""
    paths = [entry["path"] for entry in instance.artifacts]
    transaction.on_commit(lambda: artifact_store.delete_stored(paths))
