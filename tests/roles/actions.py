"""Every action of the panel and the API, with the role it needs and the audit event it writes.

`needs` is one of:
- "viewer": any role (viewer, trainer, approver) and superusers; staff without a role are refused.
- "trainer", "approver": that role and superusers.
- "superuser": permanent deletions, which no role includes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from django.core.files.uploadedfile import SimpleUploadedFile

from tests.audio import distinct_wav, zip_bytes

ALLOWED = {
    "viewer": {"superuser", "viewer", "trainer", "approver"},
    "trainer": {"superuser", "trainer"},
    "approver": {"superuser", "approver"},
    "trainer or approver": {"superuser", "trainer", "approver"},
    "superuser": {"superuser"},
}
HX = {"HX-Request": "true"}


@dataclass(frozen=True)
class Action:
    name: str
    needs: str
    run: Callable  # (client, world) -> response
    status: int = 200  # the status when allowed
    audit: str = ""  # the audit action written when allowed

    def __str__(self) -> str:
        return self.name


def wav(name: str = "new.wav", n: int = 101) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, distinct_wav(n), content_type="audio/wav")


def _json(client, method: str, url: str, body: dict):
    return getattr(client, method)(url, json.dumps(body), content_type="application/json")


PANEL_ACTIONS = [
    # Read, listen, download, try.
    Action("list datasets", "viewer", lambda c, w: (w.dataset, c.get("/datasets/"))[1]),
    Action("open a dataset", "viewer", lambda c, w: c.get(f"/datasets/{w.dataset.name}/")),
    Action("dataset statistics", "viewer", lambda c, w: c.get(f"/datasets/{w.dataset.name}/stats/")),
    Action("open a clip", "viewer", lambda c, w: c.get(f"/datasets/kws/clips/{w.clip.pk}/")),
    Action("listen to a clip", "viewer", lambda c, w: c.get(f"/datasets/kws/clips/{w.clip.pk}/audio/")),
    Action("export a dataset", "viewer", lambda c, w: c.get(f"/datasets/{w.dataset.name}/export/?layout=labels"),
           audit="dataset.export"),
    Action("export selected clips", "viewer",
           lambda c, w: c.post("/datasets/kws/clips/bulk/", {"action": "export-labels", "ids": [w.clip.pk]}),
           audit="dataset.export"),
    Action("list jobs", "viewer", lambda c, w: (w.finished_job, c.get("/training/"))[1]),
    Action("open a job", "viewer", lambda c, w: c.get(f"/training/jobs/{w.finished_job.pk}/")),
    Action("read a job's log", "viewer", lambda c, w: c.get(f"/training/jobs/{w.finished_job.pk}/log/")),
    Action("list models", "viewer", lambda c, w: (w.model, c.get("/models/"))[1]),
    Action("open a model", "viewer", lambda c, w: (w.model, c.get("/models/keywords/"))[1]),
    Action("open a version", "viewer", lambda c, w: (w.model, c.get("/models/keywords/v1/"))[1]),
    Action("download an artifact", "viewer",
           lambda c, w: (w.model, c.get("/models/keywords/v1/artifacts/model.onnx"))[1]),
    Action("try a model", "viewer", lambda c, w: (w.model, c.post("/models/keywords/try/", {"audio": wav()}, headers=HX))[1]),
    Action("read the audit trail", "viewer", lambda c, w: c.get("/audit/")),
    Action("read the prediction log", "viewer", lambda c, w: (w.prediction, c.get("/models/keywords/predictions/"))[1]),
    Action("listen to a prediction", "viewer",
           lambda c, w: c.get(f"/models/keywords/predictions/{w.prediction.pk}/audio/")),
    Action("list review queues", "viewer", lambda c, w: (w.prediction, c.get("/review/"))[1]),
    Action("open a review queue", "viewer", lambda c, w: (w.prediction, c.get("/review/kws/"))[1]),
    # Trainer and approver: flag an answer wrong.
    Action("open the flag form", "trainer or approver",
           lambda c, w: c.get(f"/models/keywords/predictions/{w.prediction.pk}/flag/")),
    Action("flag a prediction wrong", "trainer or approver",
           lambda c, w: c.post(f"/models/keywords/predictions/{w.prediction.pk}/flag/", {"label": "yes", "note": "x"}),
           status=302, audit="prediction.flag"),
    # Trainer: datasets, clips, jobs, the review queue.
    Action("accept a flagged prediction", "trainer",
           lambda c, w: c.post(f"/review/kws/{w.prediction.pk}/", {"decision": "accept", "label": "no"}),
           status=302, audit="prediction.accept"),
    Action("dismiss a flagged prediction", "trainer",
           lambda c, w: c.post(f"/review/kws/{w.prediction.pk}/", {"decision": "dismiss"}),
           status=302, audit="prediction.dismiss"),
    Action("create a dataset", "trainer",
           lambda c, w: c.post("/datasets/", {"name": "fresh", "description": "", "sample_rate": 16000}),
           status=302, audit="dataset.create"),
    Action("open dataset settings", "trainer", lambda c, w: c.get(f"/datasets/{w.dataset.name}/settings/")),
    Action("edit dataset settings", "trainer",
           lambda c, w: c.post(f"/datasets/{w.dataset.name}/settings/",
                               {"name": "kws", "description": "renamed words", "sample_rate": 16000}),
           status=302, audit="dataset.update"),
    Action("upload clips", "trainer", lambda c, w: c.post(f"/datasets/{w.dataset.name}/upload/", {"files": [wav()], "label": "yes"}),
           audit="clip.upload"),
    Action("edit a clip", "trainer",
           lambda c, w: c.post(f"/datasets/kws/clips/{w.clip.pk}/",
                               {"label": "maybe", "transcript": "", "score": "", "speaker": "", "notes": ""}),
           status=302, audit="clip.edit"),
    Action("edit a clip inline", "trainer",
           lambda c, w: c.post(f"/datasets/kws/clips/{w.clip.pk}/edit/label/", {"value": "maybe"}, headers=HX),
           audit="clip.edit"),
    Action("trash a clip", "trainer", lambda c, w: c.post(f"/datasets/kws/clips/{w.clip.pk}/trash/"),
           status=302, audit="clip.trash"),
    Action("restore a clip", "trainer", lambda c, w: c.post(f"/datasets/kws/clips/{w.trashed_clip.pk}/restore/"),
           status=302, audit="clip.restore"),
    Action("trash clips in bulk", "trainer",
           lambda c, w: c.post("/datasets/kws/clips/bulk/", {"action": "trash", "ids": [w.clip.pk]}),
           status=302, audit="clip.trash"),
    Action("open the new-job form", "trainer", lambda c, w: (w.dataset, c.get("/training/new/?dataset=kws"))[1]),
    Action("start a job", "trainer",
           lambda c, w: (w.trainable, c.post("/training/new/", {"dataset": "kws", "model_name": "kws-model", "preset": "quick"}))[1],
           status=302, audit="job.start"),
    Action("cancel a job", "trainer", lambda c, w: c.post(f"/training/jobs/{w.queued_job.pk}/cancel/"),
           status=302, audit="job.cancel"),
    Action("run a job again", "trainer", lambda c, w: c.post(f"/training/jobs/{w.finished_job.pk}/rerun/"),
           status=302, audit="job.start"),
    # Approver: aliases and versions.
    Action("confirm a promotion", "approver",
           lambda c, w: (w.model, c.get("/models/keywords/aliases/promote/?alias=production&version=3"))[1]),
    Action("promote a version", "approver",
           lambda c, w: (w.model, c.post("/models/keywords/aliases/promote/", {"alias": "production", "version": 3, "note": "better"}))[1],
           status=302, audit="alias.set"),
    Action("roll an alias back", "approver",
           lambda c, w: (w.model, c.post("/models/keywords/aliases/production/rollback/", {"note": "misfires"}))[1],
           status=302, audit="alias.rollback"),
    Action("delete an alias", "approver",
           lambda c, w: (w.model, c.post("/models/keywords/aliases/production/delete/", {"note": "retired"}))[1],
           status=302, audit="alias.delete"),
    Action("archive a version", "approver",
           lambda c, w: (w.model, c.post("/models/keywords/v3/edit/", {"description": "", "tags": "", "status": "archived"}))[1],
           status=302, audit="version.archive"),
    Action("describe a model", "approver",
           lambda c, w: (w.model, c.post("/models/keywords/edit/", {"description": "Wake words"}))[1],
           status=302, audit="model.update"),
    Action("open an alias's traffic", "approver",
           lambda c, w: (w.model, c.get("/models/keywords/aliases/production/traffic/"))[1]),
    Action("split and shadow an alias", "approver",
           lambda c, w: (w.model, c.post("/models/keywords/aliases/production/traffic/",
                                         {"split_version": 1, "split_percent": 10, "shadow_version": 3, "note": "canary"}))[1],
           status=302, audit="alias.traffic"),
    Action("change the log settings", "approver",
           lambda c, w: (w.model, c.post("/models/keywords/logging/", {"log_predictions": "on", "log_retention_days": 7,
                                                                      "log_audio_max_bytes": 100000}))[1],
           status=302, audit="model.update"),
    # Superuser only: what cannot be undone.
    Action("delete a dataset", "superuser",
           lambda c, w: c.post(f"/datasets/{w.dataset.name}/delete/", {"confirm_name": "kws"}),
           status=302, audit="dataset.delete"),
    Action("empty the trash", "superuser", lambda c, w: (w.trashed_clip, c.post("/datasets/kws/trash/empty/"))[1],
           status=302, audit="clip.purge"),
    Action("delete a version", "superuser", lambda c, w: (w.model, c.post("/models/keywords/v3/delete/"))[1],
           status=302, audit="version.delete"),
]


API_ACTIONS = [
    Action("list datasets", "viewer", lambda c, w: (w.dataset, c.get("/api/datasets"))[1]),
    Action("get a dataset", "viewer", lambda c, w: c.get(f"/api/datasets/{w.dataset.name}")),
    Action("dataset statistics", "viewer", lambda c, w: c.get(f"/api/datasets/{w.dataset.name}/stats")),
    Action("export a dataset", "viewer", lambda c, w: c.get(f"/api/datasets/{w.dataset.name}/export?layout=labels"),
           audit="dataset.export"),
    Action("list clips", "viewer", lambda c, w: c.get(f"/api/datasets/{w.dataset.name}/clips")),
    Action("get a clip", "viewer", lambda c, w: c.get(f"/api/datasets/kws/clips/{w.clip.pk}")),
    Action("download a clip", "viewer", lambda c, w: c.get(f"/api/datasets/kws/clips/{w.clip.pk}/audio")),
    Action("list jobs", "viewer", lambda c, w: (w.finished_job, c.get("/api/jobs"))[1]),
    Action("get a job", "viewer", lambda c, w: c.get(f"/api/jobs/{w.finished_job.pk}")),
    Action("a job's epochs", "viewer", lambda c, w: c.get(f"/api/jobs/{w.finished_job.pk}/epochs")),
    Action("a job's log", "viewer", lambda c, w: c.get(f"/api/jobs/{w.finished_job.pk}/logs")),
    Action("list models", "viewer", lambda c, w: (w.model, c.get("/api/models"))[1]),
    Action("get a model", "viewer", lambda c, w: (w.model, c.get("/api/models/keywords"))[1]),
    Action("list versions", "viewer", lambda c, w: (w.model, c.get("/api/models/keywords/versions"))[1]),
    Action("get a version", "viewer", lambda c, w: (w.model, c.get("/api/models/keywords/versions/1"))[1]),
    Action("download an artifact", "viewer",
           lambda c, w: (w.model, c.get("/api/models/keywords/versions/1/artifacts/model.onnx"))[1]),
    Action("list aliases", "viewer", lambda c, w: (w.model, c.get("/api/models/keywords/aliases"))[1]),
    Action("an alias's history", "viewer", lambda c, w: (w.model, c.get("/api/models/keywords/aliases/production/history"))[1]),
    Action("predict", "viewer", lambda c, w: (w.model, c.post("/api/models/keywords/predict", {"files": [wav()]}))[1]),
    Action("list logged predictions", "viewer", lambda c, w: (w.prediction, c.get("/api/models/keywords/predictions"))[1]),
    Action("get a logged prediction", "viewer", lambda c, w: c.get(f"/api/models/keywords/predictions/{w.prediction.pk}")),
    Action("a logged prediction's audio", "viewer",
           lambda c, w: c.get(f"/api/models/keywords/predictions/{w.prediction.pk}/audio")),
    Action("live comparison", "viewer", lambda c, w: (w.prediction, c.get("/api/models/keywords/live"))[1]),
    Action("a review queue", "viewer", lambda c, w: (w.prediction, c.get("/api/review/kws"))[1]),
    Action("flag a prediction wrong", "trainer or approver",
           lambda c, w: _json(c, "post", f"/api/models/keywords/predictions/{w.prediction.pk}/flag",
                              {"label": "yes", "dataset": "kws"}), audit="prediction.flag"),
    Action("accept a flagged prediction", "trainer",
           lambda c, w: _json(c, "post", f"/api/review/kws/{w.prediction.pk}/accept", {}), audit="prediction.accept"),
    Action("dismiss a flagged prediction", "trainer",
           lambda c, w: _json(c, "post", f"/api/review/kws/{w.prediction.pk}/dismiss", {}), audit="prediction.dismiss"),
    Action("create a dataset", "trainer", lambda c, w: _json(c, "post", "/api/datasets", {"name": "fresh"}),
           status=201, audit="dataset.create"),
    Action("update a dataset", "trainer", lambda c, w: _json(c, "patch", f"/api/datasets/{w.dataset.name}", {"description": "new"}),
           audit="dataset.update"),
    Action("upload clips", "trainer", lambda c, w: c.post(f"/api/datasets/{w.dataset.name}/clips", {"files": [wav()], "label": "yes"}),
           audit="clip.upload"),
    Action("import a zip", "trainer",
           lambda c, w: c.post(f"/api/datasets/{w.dataset.name}/import",
                               {"file": SimpleUploadedFile("more.zip", zip_bytes({"yes/a.wav": distinct_wav(102)}))}),
           audit="clip.upload"),
    Action("edit a clip", "trainer", lambda c, w: _json(c, "patch", f"/api/datasets/kws/clips/{w.clip.pk}", {"label": "maybe"}),
           audit="clip.edit"),
    Action("trash a clip", "trainer", lambda c, w: c.post(f"/api/datasets/kws/clips/{w.clip.pk}/trash"), audit="clip.trash"),
    Action("restore a clip", "trainer", lambda c, w: c.post(f"/api/datasets/kws/clips/{w.trashed_clip.pk}/restore"),
           audit="clip.restore"),
    Action("trash clips in bulk", "trainer", lambda c, w: _json(c, "post", "/api/datasets/kws/clips/trash", {"ids": [w.clip.pk]}),
           audit="clip.trash"),
    Action("restore clips in bulk", "trainer",
           lambda c, w: _json(c, "post", "/api/datasets/kws/clips/restore", {"ids": [w.trashed_clip.pk]}), audit="clip.restore"),
    Action("start a job", "trainer",
           lambda c, w: (w.trainable, _json(c, "post", "/api/jobs", {"dataset": "kws", "model_name": "kws-model", "preset": "quick"}))[1],
           status=201, audit="job.start"),
    Action("cancel a job", "trainer", lambda c, w: c.post(f"/api/jobs/{w.queued_job.pk}/cancel"), audit="job.cancel"),
    Action("run a job again", "trainer", lambda c, w: c.post(f"/api/jobs/{w.finished_job.pk}/rerun"), status=201,
           audit="job.start"),
    Action("promote a version", "approver",
           lambda c, w: (w.model, _json(c, "put", "/api/models/keywords/aliases/production", {"version": 3, "note": "better"}))[1],
           audit="alias.set"),
    Action("roll an alias back", "approver",
           lambda c, w: (w.model, _json(c, "post", "/api/models/keywords/aliases/production/rollback", {"note": "misfires"}))[1],
           audit="alias.rollback"),
    Action("split and shadow an alias", "approver",
           lambda c, w: (w.model, _json(c, "put", "/api/models/keywords/aliases/production",
                                        {"split": {"version": 1, "percent": 10}, "shadow": 3}))[1],
           audit="alias.traffic"),
    Action("change the log settings", "approver",
           lambda c, w: (w.model, _json(c, "patch", "/api/models/keywords", {"log_retention_days": 7}))[1],
           audit="model.update"),
    Action("delete an alias", "approver", lambda c, w: (w.model, c.delete("/api/models/keywords/aliases/production"))[1],
           status=204, audit="alias.delete"),
    Action("archive a version", "approver",
           lambda c, w: (w.model, _json(c, "patch", "/api/models/keywords/versions/3", {"status": "archived"}))[1],
           audit="version.archive"),
    Action("tag a version", "approver",
           lambda c, w: (w.model, _json(c, "patch", "/api/models/keywords/versions/3", {"tags": ["lobby"]}))[1],
           audit="version.update"),
    Action("describe a model", "approver",
           lambda c, w: (w.model, _json(c, "patch", "/api/models/keywords", {"description": "Wake words"}))[1],
           audit="model.update"),
    Action("delete a dataset", "superuser", lambda c, w: c.delete(f"/api/datasets/{w.dataset.name}"), status=204,
           audit="dataset.delete"),
    Action("empty the trash", "superuser", lambda c, w: (w.trashed_clip, c.delete("/api/datasets/kws/trash"))[1],
           audit="clip.purge"),
    Action("delete a version", "superuser", lambda c, w: (w.model, c.delete("/api/models/keywords/versions/3"))[1],
           status=204, audit="version.delete"),
]
