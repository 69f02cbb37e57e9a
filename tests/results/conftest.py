"""Fixtures for the results tests: a real Optuna study in a tmp SQLite file."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from results_study import STANDARD, make_study


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    """The standard study, shared: tests must not add to it or move it (use ``run_dir``)."""
    return make_study(tmp_path_factory.mktemp("shared") / "demo", STANDARD)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A private ``runs/demo`` holding the standard study, free to change."""
    path = tmp_path / "runs" / "demo"
    make_study(path, STANDARD)
    return path
