"""Where a fine-tune's base version comes from: a hook the registry fills when it starts.

Training knows nothing downstream of itself (README, "Dependencies between the apps"), yet a synthesis job may
start from a registered voice (``init_from``). ``bases`` holds the three things training needs from whoever keeps
versions; registry_app/apps.py sets them: ``pin(init_from, task)`` gives the reference to store ("voice:v3" for
"voice:production", so a re-run starts from the same weights) or raises a DomainError; ``choices(task)`` lists
(reference, label) pairs for the new-job form; ``fetch(init_from, folder)`` copies the version's checked
weights.pt and config.json into ``folder``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from audioml.errors import Unprocessable


def _no_registry(*args, **kwargs):
    raise Unprocessable("init_from: no model registry is installed to fine-tune from", field="init_from")


@dataclass
class FineTuneBases:
    pin: Callable[[str, str], str] = _no_registry
    choices: Callable[[str], list[tuple[str, str]]] = lambda task: []
    fetch: Callable[[str, Path], None] = _no_registry


bases = FineTuneBases()
