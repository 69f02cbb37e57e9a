"""What a run directory holds, and where: the one place that names its files.

    runs/NAME/
      study.db          the Optuna study, SQLite (one writer: the default local search)
      study.journal     or the study as Optuna's JournalStorage file (several worker processes)
      run.json          how the run was started (backend, workers, address, storage URL, last Ray experiment)
      study.lock        held while a worker decides whether to start a trial
      search.log        Optuna's and the search's log, every trial's traceback
      weights/          trial-00012.safetensors: trained proxy weights of each trial
      ray/              Tune experiments of the ray backend (tune-0, tune-1, ...)
      trials.csv        one row per trial (particle_nas.results.trials_table)
      pareto.html       the (flops, accuracy) front
      dashboard.html    the run dashboard
      best.yaml         the particle picked by search.export

A study kept in a database (PostgreSQL) is named by ``run.json``'s ``storage``.
The search writes the study, run.json, the lock, the log and the weights;
results reads the study and writes the tables and pages, both through ``RunLayout``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

STUDY_DB = "study.db"
STUDY_JOURNAL = "study.journal"
RUN_FILE = "run.json"
LOCK_FILE = "study.lock"
LOG_FILE = "search.log"
WEIGHTS_DIR = "weights"
RAY_DIR = "ray"
TRIALS_CSV = "trials.csv"
PARETO_HTML = "pareto.html"
DASHBOARD_HTML = "dashboard.html"
BEST_YAML = "best.yaml"


@dataclass(frozen=True)
class RunLayout:
    """The files of one run directory (nothing is created until written)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ------------------------------------------------------------ files
    @property
    def study_db(self) -> Path:
        return self.root / STUDY_DB

    @property
    def study_journal(self) -> Path:
        return (self.root / STUDY_JOURNAL).resolve()

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def log_file(self) -> Path:
        return self.root / LOG_FILE

    @property
    def ray_dir(self) -> Path:
        return self.root / RAY_DIR

    @property
    def trials_csv(self) -> Path:
        return self.root / TRIALS_CSV

    @property
    def pareto_html(self) -> Path:
        return self.root / PARETO_HTML

    @property
    def dashboard_html(self) -> Path:
        return self.root / DASHBOARD_HTML

    @property
    def best_yaml(self) -> Path:
        return self.root / BEST_YAML

    @staticmethod
    def weights_name(number: int) -> str:
        """A trial's weights file, relative to the run directory (as the trial's ``weights`` attribute records it)."""
        return f"{WEIGHTS_DIR}/trial-{number:05d}.safetensors"

    def sqlite_url(self) -> str:
        return f"sqlite:///{self.study_db.resolve()}"

    # ------------------------------------------------------------ run.json
    def read_run_file(self) -> dict[str, Any]:
        """``run.json`` ({} when there is none)."""
        path = self.run_file
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} must be the JSON file particle-nas wrote, but reading it failed: {err}.") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, but got {type(data).__name__}.")
        return data

    def write_run_file(self, **fields: Any) -> None:
        """Merge ``fields`` into ``run.json`` (written atomically)."""
        self.root.mkdir(parents=True, exist_ok=True)
        data = {**self.read_run_file(), **fields}
        tmp = self.root / f".{RUN_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.run_file)

    # ------------------------------------------------------------ the study's storage
    def storage(self, *, url: str | None = None, workers: int = 1) -> str:
        """The storage location of the run: a database URL or the path of a journal file.

        A run keeps the study it was started with: the database run.json names
        (its password from ``url``, $PARTICLE_NAS_STORAGE or where libpq looks:
        run.json keeps none), else an existing ``study.journal`` or ``study.db``.
        A ``url`` naming another study than the one the run holds is refused (a
        second study in one run directory would overwrite the first's weights).
        A new run uses ``url``, else a journal when several workers will write
        to it, else SQLite. Several workers on a SQLite study are refused:
        SQLite is not safe for concurrent writers.
        """
        from ._storage import shown_location, with_password

        stored, held = self.read_run_file().get("storage"), self.held_study()
        if stored:
            url = with_password(str(stored), url)
        elif url and held is not None and url not in (self.sqlite_url(), str(self.study_journal)):
            raise ValueError(
                f"storage must be left out for {self.root}, which holds its study in {held.name}, but got {shown_location(url)}; "
                "use --name for a new run."
            )
        if url:
            if str(url).startswith("sqlite") and workers > 1:
                raise ValueError(f"workers must be 1 with a SQLite storage (several writers on one SQLite file are unsafe), but got {workers}; use a PostgreSQL URL or leave --storage out for a journal file.")
            return str(url)
        if self.study_journal.is_file():
            return str(self.study_journal)
        if self.study_db.is_file():
            if workers > 1:
                raise ValueError(
                    f"workers must be 1 for {self.root}, which holds a SQLite study (several writers on one SQLite file are unsafe), but got {workers}; "
                    "start a new run (--name) to use several workers."
                )
            return self.sqlite_url()
        return str(self.study_journal) if workers > 1 else self.sqlite_url()

    def held_study(self) -> Path | None:
        """The study file in the run directory (``study.journal`` or ``study.db``), None when it has neither."""
        return next((path for path in (self.study_journal, self.study_db) if path.is_file()), None)

    def other_storage(self, *, url: str | None = None) -> str | None:
        """The location of a study kept in a journal file or a database named by run.json; None for study.db (or nothing).

        ``url``: the database URL with its password (see ``storage``).
        """
        if not self.study_journal.is_file() and not self.run_file.is_file():
            return None
        location = self.storage(url=url)
        return None if location.startswith("sqlite") else location

    @contextlib.contextmanager
    def lock(self, *, storage: str | None = None) -> Iterator[None]:
        """An exclusive lock on the run, held while a worker decides whether to start a trial.

        A file lock in the run directory excludes the workers of this machine; with a PostgreSQL
        ``storage`` an advisory lock on the database also excludes the workers of other machines.
        """
        from ._storage import database_lock

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if storage is not None and storage.startswith("postgresql"):
                    with database_lock(storage):
                        yield
                else:
                    yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def resolve_storage(run_dir: Path, *, url: str | None = None, workers: int = 1) -> str:
    """``RunLayout(run_dir).storage(url=url, workers=workers)``."""
    return RunLayout(run_dir).storage(url=url, workers=workers)


def read_run_file(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of a run directory ({} when there is none)."""
    return RunLayout(run_dir).read_run_file()


def write_run_file(run_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into the run directory's ``run.json``."""
    RunLayout(run_dir).write_run_file(**fields)
