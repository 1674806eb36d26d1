"""Signals other apps listen to, so training never imports what comes after it in the data flow."""

from django.dispatch import Signal

# Sent before a job is created, with model_name (str) and task (str). A receiver refuses the job by raising a
# DomainError (the registry: a model's versions all have one task, so another task's job would fail at the end).
job_requested = Signal()

# Sent before a job is created when its settings name a registered version to start from (``init_from``, e.g.
# "voice:v3" or "voice:production"), with init_from (str) and task (str). The registry answers with the pinned
# reference ("voice:v3": an alias is resolved now, so a re-run starts from the same weights) or raises a
# DomainError (unknown model or version, a version of another task).
base_version_requested = Signal()

# Sent by the worker before a fine-tune trains, with init_from (the pinned "model:vN") and folder (a
# pathlib.Path to fill). The registry copies the version's weights.pt and config.json there after checking
# their SHA-256, or raises.
base_artifacts_requested = Signal()

# Sent by the new-job form with task (str): receivers return [(ref, label)] of registered versions a job of that
# task may fine-tune from (the registry lists its synthesis versions as ("voice:v3", "voice v3 (production)")).
base_versions_listed = Signal()
