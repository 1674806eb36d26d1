"""Signals other apps listen to, so training never imports what comes after it in the data flow."""

from django.dispatch import Signal

# Sent before a job is created, with model_name (str) and task (str). A receiver refuses the job by raising a
# DomainError (the registry: a model's versions all have one task, so another task's job would fail at the end).
job_requested = Signal()
