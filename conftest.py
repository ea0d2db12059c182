"""Root conftest: shares the model fixtures (tests/model_fixtures.py) with every test module."""

from tests.model_fixtures import toy_checkpoints  # noqa: F401
