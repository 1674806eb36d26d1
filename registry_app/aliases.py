"""Aliases (`production`, `staging`, …) and their history, kept beside `registry_app.models`, which imports them.

Every alias operation (point, roll back, remove) locks the model's row first and re-reads the alias under that
lock, then writes the alias, its history event and its audit event in one transaction. Operations on one
model's aliases therefore happen one at a time, and replaying the history always explains the current state."""

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from audioml.audit import Actor, record
from registry_app.errors import NothingToRollBack, ReferenceNotFound, VersionArchived
from registry_app.models import MODEL_FILE, ModelVersion, RegisteredModel, alias_name_validator


class Alias(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=63, validators=[alias_name_validator])
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "registry_app"
        ordering = ["model", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="unique_alias_per_model")]
        verbose_name_plural = "aliases"

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"

    @classmethod
    def point(cls, model: RegisteredModel, name: str, version: ModelVersion, by=None, note: str = "") -> Alias:
        """Create the alias or move it to `version` (promote). Nothing happens, and nothing is recorded, when it
        already points there. `by` (an Actor, or a user) is recorded in the history and the audit trail."""
        name = name.strip().lower()
        alias_name_validator(name)
        if version.model_id != model.pk:
            raise ReferenceNotFound(f"Version {version.version} does not belong to “{model.name}”.")
        _refuse_archived(version)
        version.verify_artifact(MODEL_FILE)  # an alias must never lead predictions to a damaged model
        with transaction.atomic():
            model = model.locked()
            version = _still_there(model, version)
            alias = cls.objects.select_related("version").filter(model=model, name=name).first()
            if alias is not None and alias.version_id == version.pk:
                alias.model = model
                return alias
            if alias is None:
                alias = cls.objects.create(model=model, name=name, version=version)
                previous = None
            else:
                previous = alias.version
            alias.model = model
            return alias._move(previous, version, AliasEvent.Action.SET, by, note)

    def rollback_target(self) -> ModelVersion | None:
        """The version this alias pointed at before its current one, per its history.

        History is replayed as a stack: a move pushes, a rollback pops, a deletion clears. So rolling back
        twice after v1 → v2 → v3 returns to v1, not back to v3. Versions deleted since are skipped.
        """
        stack: list[int | None] = []
        for event in self.model.alias_events.filter(alias_name=self.name).order_by("moved_at", "id"):
            if event.action == AliasEvent.Action.DELETE:
                stack = []
            elif event.action == AliasEvent.Action.ROLLBACK:
                if stack:
                    stack.pop()
                if not stack or stack[-1] != event.to_version_id:
                    stack.append(event.to_version_id)
            else:
                stack.append(event.to_version_id)
        # The top of the stack is the current version; look below it.
        current = self.version_id
        while stack and stack[-1] == current:
            stack.pop()
        existing = set(ModelVersion.objects.filter(pk__in=[pk for pk in stack if pk]).values_list("pk", flat=True))
        while stack:
            candidate = stack.pop()
            if candidate in existing and candidate != current:
                return ModelVersion.objects.get(pk=candidate)
        return None

    def rollback(self, by=None, note: str = "") -> Alias:
        """Point the alias back at the version before its current one (see `rollback_target`)."""
        with transaction.atomic():
            alias = self._reread()
            target = alias.rollback_target()
            if target is None:
                raise NothingToRollBack(f"{alias.name} has no earlier version in its history to roll back to.")
            if target.status == ModelVersion.Status.ARCHIVED:
                raise VersionArchived(
                    f"{alias.name} would roll back to version {target.version}, which is archived; "
                    "set it active again first."
                )
            target.verify_artifact(MODEL_FILE)
            return alias._move(alias.version, target, AliasEvent.Action.ROLLBACK, by, note)

    def remove(self, by=None, note: str = "") -> None:
        """Delete the alias; its history stays (and ends with the deletion)."""
        with transaction.atomic():
            alias = self._reread()
            alias._log(AliasEvent.Action.DELETE, alias.version, None, Actor.of(by), note)
            alias.delete()

    def _reread(self) -> Alias:
        """This alias as it is now, with the model's row locked; ReferenceNotFound if it was deleted meanwhile."""
        model = RegisteredModel.objects.get(pk=self.model_id).locked()
        alias = Alias.objects.select_related("version").filter(model=model, name=self.name).first()
        if alias is None:
            raise ReferenceNotFound(f"Model “{model.name}” has no alias “{self.name}” (it was just deleted).")
        alias.model = model
        return alias

    def _move(self, previous: ModelVersion | None, version: ModelVersion, action: str, by, note: str) -> Alias:
        if previous is not None:
            self.version = version
            self.updated_at = timezone.now()
            self.save(update_fields=["version", "updated_at"])
        self._log(action, previous, version, Actor.of(by), note)
        return self

    def _log(self, action: str, previous: ModelVersion | None, version: ModelVersion | None, actor: Actor | None,
             note: str) -> None:
        """The history event, and the audit event when someone (`actor`) asked for the change."""
        AliasEvent.objects.create(
            model_id=self.model_id, alias_name=self.name, action=action,
            from_version=previous, from_number=previous.version if previous else None,
            to_version=version, to_number=version.version if version else None,
            moved_by=actor.user if actor else None, note=note,
        )
        if actor:
            record(f"alias.{action}", self, by=actor,
                   changes={"version": [previous.version if previous else None, version.version if version else None]})


def _refuse_archived(version: ModelVersion) -> None:
    if version.status == ModelVersion.Status.ARCHIVED:
        raise VersionArchived(
            f"Version {version.version} is archived; set it active again before pointing an alias at it."
        )


def _still_there(model: RegisteredModel, version: ModelVersion) -> ModelVersion:
    """The version re-read under the model's lock: it may have been deleted or archived a moment ago."""
    current = model.versions.filter(pk=version.pk).first()
    if current is None:
        raise ReferenceNotFound(f"Version {version.version} of “{model.name}” was deleted.")
    _refuse_archived(current)
    return current


class AliasEvent(models.Model):
    """One move of an alias: kept forever as its history."""

    class Action(models.TextChoices):
        SET = "set", "Promoted"
        ROLLBACK = "rollback", "Rolled back"
        DELETE = "delete", "Deleted"

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="alias_events")
    alias_name = models.CharField(max_length=63)
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.SET)
    from_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    to_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    from_number = models.PositiveIntegerField(null=True, blank=True)
    to_number = models.PositiveIntegerField(null=True, blank=True)
    moved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    moved_at = models.DateTimeField(default=timezone.now)
    note = models.TextField(blank=True)

    class Meta:
        app_label = "registry_app"
        ordering = ["-moved_at", "-id"]

    def __str__(self) -> str:
        if self.action == self.Action.DELETE:
            return f"{self.model.name}@{self.alias_name}: deleted (was v{self.from_number})"
        start = f"v{self.from_number}" if self.from_number else "new"
        return f"{self.model.name}@{self.alias_name}: {start} → v{self.to_number}"
