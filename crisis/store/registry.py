"""The model registry: every package that owns tables declares its models module under the
``crisis.models`` entry-point group (pyproject.toml), so migrations and schema checks see
all tables without the core importing the packages above it."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from types import ModuleType

GROUP = "crisis.models"


def model_modules() -> list[ModuleType]:
    """Import and return each registered models module (sorted by entry-point name)."""
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    if not found:
        raise RuntimeError(
            f"no {GROUP!r} entry points: install the project (`make venv` or `pip install -e .`)"
        )
    return [importlib.import_module(ep.value) for ep in found]
