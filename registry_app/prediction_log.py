"""The prediction log: every answer a model gave (and every answer its shadow would have given), feedback on
wrong answers, and the review queue that turns them into clips. Kept beside `registry_app.models`, which
imports it.

A row is written for each scored file when its model logs predictions (`RegisteredModel.log_predictions`, on by
default): time, version, how it was routed, the caller (user and key), the task's answer and score, the full
answer, latency and, when the model keeps audio, the audio the model heard as a 16-bit WAV at its rate (stored
through Django's default storage, written before its row and removed with it). Rows older than the model's
`log_retention_days` are deleted every PREDICTION_LOG_EXPIRY_MINUTES on the default worker cluster
(`expire_logs`), except flagged ones still waiting in a review queue.

Feedback: a logged answer can be flagged wrong with the right label, score or transcript; with its audio kept,
it can go to a dataset's review queue, where a trainer accepts it (the audio is added to the dataset through
`Dataset.add_clips`, the same ingestion as an upload, with the corrected label, the source
"feedback on <model> v<N>" and a provenance note) or dismisses it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from audioml.audit import Actor, record
from audioml.errors import Conflict, Unprocessable
from datasets_app.models import Clip, Dataset
from registry_app.models import ModelVersion, RegisteredModel
from training_app.ml.tasks import task_module

logger = logging.getLogger(__name__)

AUDIO_FOLDER = "predictions"
EXPIRY_BATCH = 500
# Arrays a log row does not keep (they can be long and the comparison never reads them).
BULKY_FIELDS = ("scores_over_time", "window_scores", "words")


class PredictionLog(models.Model):
    class Role(models.TextChoices):
        PRIMARY = "primary", "Answered"
        SHADOW = "shadow", "Shadow"

    class Review(models.TextChoices):
        NONE = "", "—"
        PENDING = "pending", "Waiting for review"
        ACCEPTING = "accepting", "Being added"
        ACCEPTED = "accepted", "Accepted"
        DISMISSED = "dismissed", "Dismissed"

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="predictions")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    version_number = models.PositiveIntegerField(help_text="Kept when the version is deleted")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.PRIMARY)
    primary = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="shadows",
        help_text="For a shadow's answer: the answer that was returned for the same audio",
    )
    ref = models.CharField(max_length=63, blank=True, help_text="The alias, vN or latest the request used")
    arm = models.CharField(max_length=10, blank=True, help_text="primary, split, direct, latest or shadow")
    channel = models.CharField(max_length=10, default="api", help_text="api, panel or cli")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    caller_key = models.CharField(max_length=200, blank=True, help_text="The request's key (a device id…)")
    file_name = models.CharField(max_length=255, blank=True)
    input_text = models.TextField(blank=True, help_text="Synthesis: the text spoken")
    answer = models.TextField(blank=True, help_text="The label, detected or not, a score's tenth, the transcript")
    score = models.FloatField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    latency_ms = models.FloatField(default=0.0)
    duration = models.FloatField(null=True, blank=True, help_text="Seconds of audio")
    audio = models.CharField(max_length=255, blank=True, help_text="The audio's name in the media storage")
    audio_size = models.PositiveIntegerField(default=0)
    audio_note = models.CharField(max_length=200, blank=True, help_text="Why the audio was not kept")
    # Feedback
    flagged_at = models.DateTimeField(null=True, blank=True, db_index=True)
    flagged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    correct_label = models.CharField(max_length=100, blank=True)
    correct_score = models.FloatField(null=True, blank=True,
                                      validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    correct_transcript = models.TextField(blank=True)
    flag_note = models.TextField(blank=True)
    review_dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    review_status = models.CharField(max_length=10, choices=Review.choices, blank=True, default="", db_index=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    clip = models.ForeignKey(Clip, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                             help_text="The clip an accepted review added")

    class Meta:
        app_label = "registry_app"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["model", "created_at"]), models.Index(fields=["review_dataset", "review_status"])]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.version_number} prediction #{self.pk}"

    @property
    def caller(self) -> str:
        who = self.user.get_username() if self.user_id and self.user else "—"
        return f"{who} · {self.caller_key}" if self.caller_key else who

    @property
    def correction(self) -> str:
        """The right answer, as the flag gave it."""
        if self.correct_transcript:
            return self.correct_transcript
        if self.correct_score is not None:
            return f"{self.correct_score:g}"
        return self.correct_label

    # Feedback ---------------------------------------------------------------------------------------------

    def flag(self, *, by=None, label: str = "", score: float | None = None, transcript: str = "", note: str = "",
             dataset: Dataset | None = None) -> PredictionLog:
        """Mark the answer wrong with the right one (the model's task says which: a label for classification
        and detection, a score for regression, a transcript for transcription). With a dataset, the item joins
        that dataset's review queue, which needs its audio. Flagging again before review replaces the flag."""
        from datasets_app.models import clean_clip_metadata

        task = self.model.task
        needed = {"classification": "label", "detection": "label", "regression": "score",
                  "transcription": "transcript"}.get(task)
        if needed is None:
            raise Unprocessable(f"A {task} model's answers cannot be flagged with a correction.", field="label")
        given = {"label": label.strip(), "score": score, "transcript": transcript.strip()}[needed]
        if given in ("", None):
            raise Unprocessable(f"{needed}: give the right {needed} for this {task} prediction.", field=needed)
        try:
            cleaned = clean_clip_metadata(**{needed: given})
        except Exception as error:  # ValidationError naming the field
            messages = getattr(error, "message_dict", None) or {needed: [str(error)]}
            raise Unprocessable(f"{needed}: {' '.join(sum(messages.values(), []))}", field=needed) from None
        if self.role != self.Role.PRIMARY:
            raise Conflict("A shadow's answer was never returned to anyone; flag the answer that was.")
        if dataset is not None and not self.audio:
            raise Unprocessable(
                "dataset: this prediction's audio was not kept"
                + (f" ({self.audio_note})" if self.audio_note else " (the model does not keep audio)")
                + ", so it cannot go to a review queue. Turn on “Keep audio” in the model's log settings.",
                field="dataset",
            )
        actor = Actor.of(by)
        with transaction.atomic():
            row = PredictionLog.objects.select_for_update().get(pk=self.pk)
            if row.review_status in (self.Review.ACCEPTING, self.Review.ACCEPTED):
                raise Conflict(f"Prediction #{row.pk} was already reviewed and added to {row.review_dataset}.")
            before = {"correction": row.correction, "dataset": row.review_dataset.name if row.review_dataset else None}
            row.correct_label = cleaned.get("label", "") if needed == "label" else ""
            row.correct_score = cleaned.get("score") if needed == "score" else None
            row.correct_transcript = cleaned.get("transcript", "") if needed == "transcript" else ""
            row.flag_note = note.strip()
            row.flagged_at = timezone.now()
            row.flagged_by = actor.user if actor else None
            row.review_dataset = dataset
            row.review_status = self.Review.PENDING if dataset is not None else self.Review.NONE
            row.reviewed_by, row.reviewed_at = None, None
            row.save()
            if actor:
                record("prediction.flag", row, by=actor, changes={
                    "correction": [before["correction"] or None, row.correction],
                    "dataset": [before["dataset"], dataset.name if dataset else None],
                })
        return row

    @property
    def clip_source(self) -> str:
        """The source of the clip an accepted review adds: the version whose answer was corrected. One source per
        version, so a model card counts the feedback clips of each version together; the prediction's number
        and the rest of the story are in the clip's notes (`provenance_note`)."""
        return f"feedback on {self.model.name} v{self.version_number}"

    def provenance_note(self, reviewer=None) -> str:
        when = timezone.localtime(self.created_at).strftime("%Y-%m-%d %H:%M")
        parts = [
            f"From prediction #{self.pk} of {self.model.name} v{self.version_number} ({self.ref or 'direct'}"
            f"{', split' if self.arm == 'split' else ''}) on {when}, caller {self.caller}",
            f"it answered “{self.answer}”" + (f" ({self.score:.3g})" if self.score is not None else ""),
            f"flagged wrong by {self.flagged_by or 'someone'} as “{self.correction}”"
            + (f": {self.flag_note}" if self.flag_note else ""),
        ]
        if reviewer is not None:
            parts.append(f"accepted by {reviewer}")
        return "; ".join(parts) + "."

    def accept(self, *, by=None, label: str | None = None, score: float | None = None,
               transcript: str | None = None) -> Clip:
        """Add the audio to the review dataset as a clip with the corrected label (or the one given now), its
        source (`clip_source`) and a provenance note, through the dataset's own ingestion; the item is then accepted. Refused (409) when
        it is not waiting for review, or when the dataset refuses the audio (a duplicate, say)."""
        from datasets_app.ingest import IngestItem

        actor = Actor.of(by)
        claimed = PredictionLog.objects.filter(pk=self.pk, review_status=self.Review.PENDING).update(
            review_status=self.Review.ACCEPTING)
        if claimed != 1:
            raise Conflict(f"Prediction #{self.pk} is not waiting for review (someone may just have reviewed it).")
        row = PredictionLog.objects.select_related("model", "review_dataset", "flagged_by", "user").get(pk=self.pk)
        try:
            if row.review_dataset is None:
                raise Conflict("The dataset this item was queued for was deleted; flag it again for another.")
            if not default_storage.exists(row.audio):
                raise Conflict(f"Prediction #{row.pk}'s audio is no longer in the storage.")
            with default_storage.open(row.audio, "rb") as handle:
                data = handle.read()
            item = IngestItem(
                name=f"prediction-{row.pk}.wav", data=data,
                label=row.correct_label if label is None else label,
                transcript=row.correct_transcript if transcript is None else transcript,
                score=row.correct_score if score is None else score,
                notes=row.provenance_note(reviewer=actor.user if actor and actor.user else None),
                source=row.clip_source,
            )
            report = row.review_dataset.add_clips([item], by=actor)
            result = report.files[0]
            if not result.accepted:
                raise Conflict(f"{row.review_dataset.name} refused the clip: {result.reason}.",
                               reason=result.code, duplicate_of=result.duplicate_of)
        except BaseException:
            PredictionLog.objects.filter(pk=row.pk, review_status=self.Review.ACCEPTING).update(
                review_status=self.Review.PENDING)
            raise
        with transaction.atomic():
            PredictionLog.objects.filter(pk=row.pk).update(
                review_status=self.Review.ACCEPTED, clip_id=result.clip_id, reviewed_at=timezone.now(),
                reviewed_by=actor.user if actor else None)
            if actor:
                record("prediction.accept", row, by=actor,
                       changes={"review": ["pending", "accepted"], "clip": [None, result.clip_id]})
        return Clip.objects.get(pk=result.clip_id)

    def dismiss(self, *, by=None, note: str = "") -> None:
        """Take the item out of the review queue without adding it."""
        actor = Actor.of(by)
        with transaction.atomic():
            changed = PredictionLog.objects.filter(pk=self.pk, review_status=self.Review.PENDING).update(
                review_status=self.Review.DISMISSED, reviewed_at=timezone.now(),
                reviewed_by=actor.user if actor else None)
            if changed != 1:
                raise Conflict(f"Prediction #{self.pk} is not waiting for review (someone may just have reviewed it).")
            if actor:
                record("prediction.dismiss", self, by=actor,
                       changes={"review": ["pending", "dismissed"], **({"note": [None, note]} if note else {})})


@receiver(post_delete, sender=PredictionLog, dispatch_uid="registry_delete_prediction_audio")
def _delete_audio(sender, instance: PredictionLog, **kwargs) -> None:
    """A deleted log row's audio leaves the storage once the deletion is committed."""
    if instance.audio:
        name = instance.audio
        transaction.on_commit(lambda: _delete_stored(name))


def audio_response(row: PredictionLog, filename: str):
    """The kept audio for a player: streamed from local storage, or a redirect to a short-lived presigned URL
    on object storage (the bucket answers the player's byte ranges)."""
    from django.http import FileResponse, Http404, HttpResponseRedirect

    from audioml.storage import download_url

    if not row.audio or not default_storage.exists(row.audio):
        raise Http404(f"Prediction #{row.pk}'s audio was not kept" + (f" ({row.audio_note})." if row.audio_note else "."))
    if url := download_url(row.audio, filename, "audio/wav", as_attachment=False):
        return HttpResponseRedirect(url)
    return FileResponse(default_storage.open(row.audio, "rb"), content_type="audio/wav", filename=filename)


def _delete_stored(name: str) -> None:
    try:
        default_storage.delete(name)
    except OSError:
        logger.warning("Could not delete %s; the sweeper will", name)


# Writing the log ------------------------------------------------------------------------------------------


def answer_of(task: str, result: dict[str, Any]) -> tuple[str, float | None]:
    module = task_module(task)
    if hasattr(module, "prediction_answer"):
        answer, score = module.prediction_answer(result)
        return answer, (None if score is None else float(score))
    return "", None


def answers_agree(task: str, first: tuple[str, float | None], second: tuple[str, float | None]) -> bool:
    module = task_module(task)
    if hasattr(module, "answers_agree"):
        return bool(module.answers_agree(first, second))
    return first[0] == second[0]


def _kept_result(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in BULKY_FIELDS}


def _store_audio(model: RegisteredModel, samples: np.ndarray | None, sample_rate: int) -> tuple[str, int, str]:
    """(name, size, note): the audio as 16-bit WAV in the storage when the model keeps audio and it fits."""
    if not model.log_audio or samples is None:
        return "", 0, ""
    from audioml.audio.canonical import pcm16_wav, to_pcm16

    wav = pcm16_wav(to_pcm16(np.asarray(samples, dtype=np.float32)), sample_rate)
    if len(wav) > model.log_audio_max_bytes:
        return "", 0, f"{len(wav):,} bytes, over the model's cap of {model.log_audio_max_bytes:,}"
    day = timezone.now().strftime("%Y/%m/%d")
    name = default_storage.save(f"{AUDIO_FOLDER}/{model.pk}/{day}/{uuid.uuid4().hex}.wav", ContentFile(wav))
    return name, len(wav), ""


def record_prediction(model: RegisteredModel, version: ModelVersion, result: dict[str, Any], *, ref: str, arm: str,
                      user=None, key: str = "", channel: str = "api", samples: np.ndarray | None = None,
                      sample_rate: int = 16000, primary: PredictionLog | None = None,
                      input_text: str = "") -> PredictionLog | None:
    """Log one answer (None when the model keeps no log). The audio file is written first and removed again
    if its row cannot be, so neither exists without the other."""
    if not model.log_predictions:
        return None
    answer, score = answer_of(model.task, result) if not input_text else (result.get("answer", ""), None)
    audio, size, note = ("", 0, "") if input_text else _store_audio(model, samples, sample_rate)
    try:
        return PredictionLog.objects.create(
            model=model, version=version, version_number=version.version,
            role=PredictionLog.Role.SHADOW if primary is not None else PredictionLog.Role.PRIMARY,
            primary=primary, ref=ref[:63], arm=arm, channel=channel,
            user=user if getattr(user, "is_authenticated", False) else None, caller_key=key[:200],
            file_name=str(result.get("file", ""))[:255], input_text=input_text, answer=answer, score=score,
            result=_kept_result(result), latency_ms=float(result.get("time_ms") or 0.0),
            duration=result.get("duration"), audio=audio, audio_size=size, audio_note=note,
        )
    except BaseException:
        if audio:
            _delete_stored(audio)
        raise


def run_shadow(shadow_version_pk: int, primary_pk: int, samples: np.ndarray, sample_rate: int, duration: float,
               threshold: float | None) -> None:
    """Score the audio a primary answer was given for with the shadow version and log that answer, linked to
    the primary's row. Runs on the shadow pool (registry_app.traffic), never in the request."""
    import time

    from audioml.audio.resample import resample
    from registry_app import inference

    primary = PredictionLog.objects.select_related("model").filter(pk=primary_pk).first()
    version = ModelVersion.objects.select_related("model").filter(pk=shadow_version_pk).first()
    if primary is None or version is None:
        return  # expired or deleted meanwhile
    started = time.perf_counter()
    loaded, cached = inference.cache.get(version)
    if loaded.sample_rate != sample_rate:
        samples = resample(samples, sample_rate, loaded.sample_rate)
    request = inference.PredictionRequest(model=version.model, version=version, ref=primary.ref, loaded=loaded,
                                          cached=cached, threshold=threshold)
    answer = request.answer(samples, duration)
    answer.pop("windows", None)
    result = {"file": primary.file_name, **answer, **request.base(), "duration": round(duration, 4),
              "time_ms": round((time.perf_counter() - started) * 1000, 2)}
    record_prediction(version.model, version, result, ref=primary.ref, arm="shadow", user=primary.user,
                      key=primary.caller_key, channel=primary.channel, primary=primary)  # the audio is the primary's


# Retention ------------------------------------------------------------------------------------------------


def expire_logs(now=None, dry_run: bool = False) -> dict[str, int]:
    """Delete logged predictions older than their model's retention (with their audio), except flagged ones
    waiting for review. Returns {model name: rows deleted (or that would be)}."""
    now = now or timezone.now()
    report: dict[str, int] = {}
    for model in RegisteredModel.objects.all():
        cutoff = now - timedelta(days=model.log_retention_days)
        expired = (PredictionLog.objects.filter(model=model, created_at__lt=cutoff)
                   .exclude(review_status__in=[PredictionLog.Review.PENDING, PredictionLog.Review.ACCEPTING])
                   .exclude(primary__review_status__in=[PredictionLog.Review.PENDING, PredictionLog.Review.ACCEPTING]))
        count = 0
        while True:
            ids = list(expired.values_list("pk", flat=True)[:EXPIRY_BATCH])
            if not ids:
                break
            count += len(ids)
            if dry_run:
                break
            with transaction.atomic():
                PredictionLog.objects.filter(pk__in=ids).delete()
        if dry_run:
            count = expired.count()
        if count:
            report[model.name] = count
    if report:
        logger.info("Prediction log expiry: %s", report)
    return report


def scheduled_expiry() -> dict[str, int]:
    """The django-q2 entry point (every PREDICTION_LOG_EXPIRY_MINUTES on the default cluster)."""
    return expire_logs()


EXPIRY_SCHEDULE_NAME = "registry: delete logged predictions past their retention"


def ensure_expiry_schedule(using: str = "default", **kwargs) -> None:
    """Schedule the log expiry on the default cluster (idempotent; after every migrate)."""
    from django.db import connections
    from django_q.models import Schedule

    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return
    Schedule.objects.using(using).update_or_create(
        name=EXPIRY_SCHEDULE_NAME,
        defaults={
            "func": "registry_app.prediction_log.scheduled_expiry",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.PREDICTION_LOG_EXPIRY_MINUTES,
            "repeats": -1,
            "cluster": None,
        },
    )


# Live comparison ------------------------------------------------------------------------------------------

LIVE_ROWS_MAX = 100_000  # the newest rows a comparison reads
LIVE_TOP_ANSWERS = 6


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def live_comparison(model: RegisteredModel, hours: int = 24, now=None) -> dict[str, Any]:
    """How each version did on the traffic of the last `hours`: requests (and how they were routed), latency
    p50/p95, the distribution of answers, flags, and for each shadow how often it agreed with the answer that
    was returned for the same audio (per primary version)."""
    from collections import Counter, defaultdict

    now = now or timezone.now()
    since = now - timedelta(hours=hours)
    rows = list(PredictionLog.objects.filter(model=model, created_at__gte=since).order_by("-created_at")
                .values("id", "version_number", "role", "arm", "answer", "score", "latency_ms", "primary_id",
                        "flagged_at")[:LIVE_ROWS_MAX])
    groups: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["version_number"], row["role"])].append(row)
    answered = sum(1 for row in rows if row["role"] == PredictionLog.Role.PRIMARY)
    versions = []
    for (number, role), members in sorted(groups.items(), key=lambda item: (item[0][1] != "primary", -item[0][0])):
        counts = Counter(row["answer"] for row in members)
        latencies = [row["latency_ms"] for row in members]
        versions.append({
            "version": number,
            "role": role,
            "requests": len(members),
            "share": round(len(members) / answered, 4) if role == PredictionLog.Role.PRIMARY and answered else None,
            "arms": dict(Counter(row["arm"] for row in members)),
            "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
            "answers": [{"answer": answer, "count": count, "share": round(count / len(members), 4)}
                        for answer, count in counts.most_common(LIVE_TOP_ANSWERS)],
            "other_answers": len(members) - sum(count for _, count in counts.most_common(LIVE_TOP_ANSWERS)),
            "flagged": sum(1 for row in members if row["flagged_at"] is not None),
        })
    shadows = [row for row in rows if row["role"] == PredictionLog.Role.SHADOW and row["primary_id"]]
    primaries = {row["id"]: row for row in rows if row["role"] == PredictionLog.Role.PRIMARY}
    missing = {row["primary_id"] for row in shadows} - set(primaries)
    if missing:
        primaries.update({row["id"]: row for row in PredictionLog.objects.filter(pk__in=missing).values(
            "id", "version_number", "answer", "score")})
    pairs: dict[tuple[int, int], list[bool]] = defaultdict(list)
    for row in shadows:
        primary = primaries.get(row["primary_id"])
        if primary is not None:
            agreed = answers_agree(model.task, (row["answer"], row["score"]), (primary["answer"], primary["score"]))
            pairs[(row["version_number"], primary["version_number"])].append(agreed)
    agreement = [{"shadow": shadow, "primary": primary, "compared": len(results), "agreed": sum(results),
                  "rate": round(sum(results) / len(results), 4)}
                 for (shadow, primary), results in sorted(pairs.items())]
    return {"hours": hours, "since": since, "total": len(rows), "answered": answered,
            "truncated": len(rows) >= LIVE_ROWS_MAX, "versions": versions, "agreement": agreement}
