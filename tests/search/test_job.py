"""A search job is what to search (SearchTask) and how to run it (RunOptions)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from particle_nas.search import RunOptions, SearchJob, SearchSettings, SearchTask
from particle_nas.space import NetworkSpec, SearchSpace

TASK = SearchTask(
    name="j", space=SearchSpace.from_dict({"factorization": ["full"]}), network=NetworkSpec(widths=(8,), depths=(1,), temporal_strides=(1,), spatial_strides=(1,), clip=(4, 16, 16)),
    evaluator=None, settings=SearchSettings(), seed=3, fingerprint={"a": 1}, config={},
)  # fmt: skip


def test_a_job_is_a_task_and_its_options_and_reads_their_fields():
    job = SearchJob(TASK, RunOptions(run_dir=Path("runs/j"), workers=2))
    assert (job.name, job.seed, job.run_dir, job.workers, job.storage) == ("j", 3, Path("runs/j"), 2, None)
    assert job.layout.root == Path("runs/j")


def test_the_flat_keywords_make_the_same_job():
    flat = SearchJob(run_dir=Path("runs/j"), workers=2, **{f.name: getattr(TASK, f.name) for f in dataclasses.fields(SearchTask)})
    assert flat == SearchJob(TASK, RunOptions(run_dir=Path("runs/j"), workers=2))


def test_a_job_is_changed_by_field_and_pickles_whole():
    job = SearchJob(TASK, RunOptions(run_dir=Path("runs/j")))
    changed = dataclasses.replace(job, workers=4, seed=9)
    assert (changed.workers, changed.seed, changed.task.name) == (4, 9, "j") and job.workers == 1
    assert job.replace(storage="sqlite:///x.db").options.storage == "sqlite:///x.db"
    assert pickle.loads(pickle.dumps(changed)) == changed


def test_an_unknown_field_is_refused_in_one_line():
    with pytest.raises(TypeError, match=r"^SearchJob fields must be those of SearchTask or RunOptions, but got \['wokers'\]\.$"):
        SearchJob(TASK, RunOptions(run_dir=Path("r")), wokers=2)
