"""Aliases (`production`, `staging`, …), their traffic split and shadow, and their history, kept beside
`registry_app.models`, which imports them.

Every alias operation (point, roll back, remove) locks the model's row first and re-reads the alias under that
lock, then writes the alias, its history event and its audit event in one transaction. Operations on one
model's aliases therefore happen one at a time, and replaying the history always explains the current state."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.utils import timezone

from audioml.audit import Actor, record
from audioml.errors import Unprocessable
from registry_app.errors import NothingToRollBack, ReferenceNotFound, VersionArchived
from registry_app.models import MODEL_FILE, ModelVersion, RegisteredModel, alias_name_validator
from training_app.ml.tasks import task_module

MAX_SPLIT_PERCENT = 99  # a split of 100% is a promotion


# `point(..., split=KEEP)`: leave that part of the alias's traffic as it is.
KEEP = object()


class Alias(models.Model):
    """A name that answers predictions. `version` is its primary version; a split sends `split_percent` of
    the traffic to `split_version` instead (sticky per caller key, registry_app.traffic); a shadow version
    scores every request in the background, its answers only logged."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=63, validators=[alias_name_validator])
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    split_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="split_aliases",
        help_text="Receives split_percent of the alias's traffic",
    )
    split_percent = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(MAX_SPLIT_PERCENT)]
    )
    shadow_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="shadow_aliases",
        help_text="Scores every request in the background; its answers are logged, never returned",
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "registry_app"
        ordering = ["model", "name"]
        constraints = [
            models.UniqueConstraint(fields=["model", "name"], name="unique_alias_per_model"),
            models.CheckConstraint(
                condition=models.Q(split_version__isnull=True, split_percent=0)
                | models.Q(split_version__isnull=False, split_percent__gte=1, split_percent__lte=MAX_SPLIT_PERCENT),
                name="alias_split_has_a_version_and_a_share",
            ),
        ]
        verbose_name_plural = "aliases"

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"

    def traffic(self) -> dict:
        """Where the alias's traffic goes besides its primary version, as history events record it."""
        return _traffic(self.split_version, self.split_percent, self.shadow_version)

    @property
    def primary_percent(self) -> int:
        return 100 - (self.split_percent if self.split_version_id else 0)

    @classmethod
    def point(cls, model: RegisteredModel, name: str, version: ModelVersion | None, by=None, note: str = "", *,
              split=KEEP, shadow=KEEP) -> Alias:
        """Create the alias or move it to `version` (promote), and/or change where its traffic goes.

        `split` is KEEP, None (all traffic to the primary version) or (version, percent 1-99); `shadow` is KEEP,
        None or a version. `version` None keeps the primary (the alias must exist). A split or shadow of the
        version the alias now points at is dropped (it answers everything already). Nothing happens, and
        nothing is recorded, when nothing changes; otherwise one history event (`set` when the primary moved,
        else `traffic`) and its audit event are written with the change. `by` (an Actor, or a user) is recorded.
        """
        name = name.strip().lower()
        alias_name_validator(name)
        for candidate in (version, split[0] if isinstance(split, tuple) else None,
                          shadow if isinstance(shadow, ModelVersion) else None):
            if candidate is not None:
                if candidate.model_id != model.pk:
                    raise ReferenceNotFound(f"Version {candidate.version} does not belong to “{model.name}”.")
                _refuse_archived(candidate)
                candidate.verify_artifact(MODEL_FILE)  # an alias must never lead predictions to a damaged model
        with transaction.atomic():
            model = model.locked()
            alias = cls.objects.select_related("version", "split_version", "shadow_version").filter(
                model=model, name=name).first()
            if version is None:
                if alias is None:
                    raise Unprocessable(f"“{name}” does not exist yet: name the version it should point at.",
                                        field="version")
                version = alias.version
            version = _still_there(model, version)
            split_version, split_percent = (alias.split_version, alias.split_percent) if alias else (None, 0)
            shadow_version = alias.shadow_version if alias else None
            if split is not KEEP:
                split_version, split_percent = _checked_split(model, split)
            if shadow is not KEEP:
                shadow_version = _still_there(model, shadow) if shadow is not None else None
                if shadow_version is not None and not getattr(task_module(model.task), "PREDICTS", True):
                    raise Unprocessable(f"“{model.name}” is a {model.task} model: a shadow version compares answers "
                                        "to audio, which a voice does not give.", field="shadow")
            if split_version is not None and split_version.pk == version.pk:
                if split is not KEEP:
                    raise Unprocessable(f"v{version.version} is the version the alias points at; split to another.",
                                        field="split")
                split_version, split_percent = None, 0
            if shadow_version is not None and shadow_version.pk in {version.pk, getattr(split_version, "pk", None)}:
                if shadow is not KEEP:
                    raise Unprocessable(f"v{shadow_version.version} already answers this alias's requests; "
                                        "a shadow must be a version that answers none.", field="shadow")
                shadow_version = None
            after = _traffic(split_version, split_percent, shadow_version)
            if alias is None:
                alias = cls.objects.create(model=model, name=name, version=version, split_version=split_version,
                                           split_percent=split_percent, shadow_version=shadow_version)
                alias.model = model
                return alias._log(AliasEvent.Action.SET, None, version, Actor.of(by), note, _traffic(None, 0, None),
                                  after)
            before = alias.traffic()
            if alias.version_id == version.pk and before == after:
                alias.model = model
                return alias
            previous = alias.version
            action = AliasEvent.Action.SET if previous.pk != version.pk else AliasEvent.Action.TRAFFIC
            alias.model = model
            alias._save_routes(version, split_version, split_percent, shadow_version)
            return alias._log(action, previous, version, Actor.of(by), note, before, after)

    def rollback_target(self) -> ModelVersion | None:
        """The version this alias pointed at before its current one, per its history.

        History is replayed as a stack: a move pushes, a rollback pops, a deletion clears (traffic changes
        leave the primary where it is and are skipped). So rolling back twice after v1 → v2 → v3 returns to
        v1, not back to v3. Versions deleted since are skipped.
        """
        stack: list[int | None] = []
        for event in self.model.alias_events.filter(alias_name=self.name).order_by("moved_at", "id"):
            if event.action == AliasEvent.Action.TRAFFIC:
                continue
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
        """Point the alias back at the version before its current one (see `rollback_target`). A split or shadow
        of that version is dropped (it answers everything again); the rest of the traffic stays as it is."""
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
            before = alias.traffic()
            split_version, split_percent = alias.split_version, alias.split_percent
            if split_version is not None and split_version.pk == target.pk:
                split_version, split_percent = None, 0
            shadow_version = alias.shadow_version
            if shadow_version is not None and shadow_version.pk == target.pk:
                shadow_version = None
            previous = alias.version
            alias._save_routes(target, split_version, split_percent, shadow_version)
            return alias._log(AliasEvent.Action.ROLLBACK, previous, target, Actor.of(by), note, before,
                              alias.traffic())

    def remove(self, by=None, note: str = "") -> None:
        """Delete the alias (its split and shadow with it); its history stays (and ends with the deletion)."""
        with transaction.atomic():
            alias = self._reread()
            alias._log(AliasEvent.Action.DELETE, alias.version, None, Actor.of(by), note, alias.traffic(),
                       _traffic(None, 0, None))
            alias.delete()

    def _reread(self) -> Alias:
        """This alias as it is now, with the model's row locked; ReferenceNotFound if it was deleted meanwhile."""
        model = RegisteredModel.objects.get(pk=self.model_id).locked()
        alias = Alias.objects.select_related("version", "split_version", "shadow_version").filter(
            model=model, name=self.name).first()
        if alias is None:
            raise ReferenceNotFound(f"Model “{model.name}” has no alias “{self.name}” (it was just deleted).")
        alias.model = model
        return alias

    def _save_routes(self, version, split_version, split_percent: int, shadow_version) -> None:
        self.version, self.split_version, self.split_percent = version, split_version, split_percent
        self.shadow_version = shadow_version
        self.updated_at = timezone.now()
        self.save(update_fields=["version", "split_version", "split_percent", "shadow_version", "updated_at"])

    def _log(self, action: str, previous: ModelVersion | None, version: ModelVersion | None, actor: Actor | None,
             note: str, before: dict, after: dict) -> Alias:
        """The history event, and the audit event when someone (`actor`) asked for the change."""
        AliasEvent.objects.create(
            model_id=self.model_id, alias_name=self.name, action=action,
            from_version=previous, from_number=previous.version if previous else None,
            to_version=version, to_number=version.version if version else None,
            moved_by=actor.user if actor else None, note=note,
            traffic={"before": before, "after": after} if before != after else {},
        )
        if actor:
            changes = {"version": [previous.version if previous else None, version.version if version else None]}
            if action == AliasEvent.Action.TRAFFIC:
                changes = {}
            for part in ("split", "shadow"):
                if before.get(part) != after.get(part):
                    changes[part] = [before.get(part), after.get(part)]
            record(f"alias.{action}", self, by=actor, changes=changes)
        return self


def _traffic(split_version, split_percent: int, shadow_version) -> dict:
    return {
        "split": {"version": split_version.version, "percent": split_percent} if split_version is not None else None,
        "shadow": shadow_version.version if shadow_version is not None else None,
    }


def _checked_split(model: RegisteredModel, split) -> tuple[ModelVersion | None, int]:
    if split is None:
        return None, 0
    version, percent = split
    if not isinstance(percent, int) or isinstance(percent, bool) or not 1 <= percent <= MAX_SPLIT_PERCENT:
        raise Unprocessable(f"split: the share of traffic is a whole percentage from 1 to {MAX_SPLIT_PERCENT}, "
                            f"got {percent!r}.", field="split")
    return _still_there(model, version), percent


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
        TRAFFIC = "traffic", "Traffic changed"

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
    # Where the rest of the traffic went before and after the event, when that changed:
    # {"before": {"split": {"version": 4, "percent": 10} | None, "shadow": 5 | None}, "after": {...}}
    traffic = models.JSONField(default=dict, blank=True)

    class Meta:
        app_label = "registry_app"
        ordering = ["-moved_at", "-id"]

    def __str__(self) -> str:
        if self.action == self.Action.DELETE:
            return f"{self.model.name}@{self.alias_name}: deleted (was v{self.from_number})"
        if self.action == self.Action.TRAFFIC:
            return f"{self.model.name}@{self.alias_name}: traffic of v{self.to_number} changed"
        start = f"v{self.from_number}" if self.from_number else "new"
        return f"{self.model.name}@{self.alias_name}: {start} → v{self.to_number}"
