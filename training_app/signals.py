"""Signals other apps listen to, so training never imports what comes after it in the data flow."""

from django.dispatch import Signal

# Sent by the training task once a job's artifacts are complete on disk, before the job is marked succeeded.
# Keyword arguments: job (TrainingJob), artifacts_dir (pathlib.Path), result (training_app.ml.train.TrainResult).
# A receiver that raises makes the job fail with that error; nothing it half-did may remain (use a transaction
# and clean up stored files).
job_succeeded = Signal()

# Sent before a job is created, with model_name (str) and task (str). A receiver refuses the job by raising a
# DomainError (the registry: a model's versions all have one task, so another task's job would fail at the end).
job_requested = Signal()
