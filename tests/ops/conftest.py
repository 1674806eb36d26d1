"""Shared by the operations tests: the registry's tiny trained model, trained once per session."""

from tests.registry.conftest import register, trained_artifacts  # noqa: F401 - fixtures
