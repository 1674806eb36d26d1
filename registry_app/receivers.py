"""Signal receivers of the registry."""

from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from registry_app import artifacts as artifact_store
from registry_app.models import ModelVersion, RegisteredModel
from training_app.signals import base_artifacts_requested, base_version_requested, base_versions_listed, job_requested


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


@receiver(base_version_requested, dispatch_uid="registry_pin_base_version")
def pin_base_version(sender, init_from: str, task: str, **kwargs) -> str:
    return ModelVersion.objects.base_for(init_from, task).pinned_ref


@receiver(base_artifacts_requested, dispatch_uid="registry_copy_base_artifacts")
def copy_base_artifacts(sender, init_from: str, folder: Path, **kwargs) -> Path:
    version = ModelVersion.objects.base_for(init_from, None)
    for name in ("weights.pt", "config.json"):
        entry = version.verify_artifact(name)
        artifact_store.copy_to_local(entry["path"], Path(folder) / name)
    return Path(folder)


@receiver(base_versions_listed, dispatch_uid="registry_list_base_versions")
def list_base_versions(sender, task: str, **kwargs) -> list[tuple[str, str]]:
    versions = (ModelVersion.objects.filter(model__task=task, status=ModelVersion.Status.ACTIVE)
                .select_related("model").prefetch_related("aliases").order_by("model__name", "-version"))
    choices = []
    for version in versions:
        aliases = ", ".join(alias.name for alias in version.aliases.all())
        choices.append((version.pinned_ref, f"{version.model.name} v{version.version}" + (f" ({aliases})" if aliases else "")))
    return choices
