from __future__ import annotations

import dataclasses
import sqlite3

import numpy as np
import pandas as pd
import pytest

from particle_nas.results import COLUMNS, open_run, trials_table, write_trials_csv
from particle_nas.space import ParticleSpec

from results_study import NETWORK, PARTICLES, STANDARD, make_study


def test_columns_rows_and_states(study):
    df = trials_table(study)
    particle_fields = [f.name for f in dataclasses.fields(ParticleSpec)]
    assert list(df.columns) == list(COLUMNS)
    assert list(df.columns[2 : 2 + len(particle_fields)]) == particle_fields
    for name in ("number", "state", "flops", "params", "accuracy", "epoch_accuracy", "duration_s",
                 "datetime_start", "datetime_complete", "fail_reason", "duplicate_of", "pareto"):
        assert name in df.columns
    assert len(df) == len(STANDARD)
    assert df["number"].tolist() == list(range(len(STANDARD)))
    assert df["state"].tolist() == [row[0] for row in STANDARD]


def test_values_and_missing(study):
    df = trials_table(study).set_index("number")
    assert df.loc[3, "accuracy"] == 0.80
    assert df.loc[3, "flops"] == 4_000_000 and df["flops"].dtype == "Int64"
    assert df.loc[3, "params"] == 12_000
    assert df.loc[3, "epoch_accuracy"] == "0.4000 0.8000"
    assert df.loc[3, "duration_s"] == 4.5
    assert df.loc[0, "factorization"] == PARTICLES[0].factorization
    assert df.loc[1, "temporal_kernel"] == 5
    assert df.loc[2, "expansion"] == 6.0
    assert df.loc[4, "fail_reason"] == "CUDA out of memory"
    assert pd.isna(df.loc[4, "accuracy"]) and pd.isna(df.loc[4, "flops"])
    assert df.loc[4, "factorization"] == PARTICLES[4].factorization  # finished trials keep their particle
    assert df.loc[8, "duplicate_of"] == 3 and pd.isna(df.loc[3, "duplicate_of"])
    assert pd.isna(df.loc[9, "factorization"])  # WAITING: nothing sampled yet
    assert pd.isna(df.loc[6, "datetime_complete"]) and not pd.isna(df.loc[6, "datetime_start"])
    assert not pd.isna(df.loc[0, "datetime_complete"])
    assert df.attrs["objectives"] == ["accuracy", "flops"]
    assert df.attrs["study_name"] == "demo"


def test_pareto_column_is_best_trials(study):
    df = trials_table(study)
    assert sorted(df.loc[df["pareto"], "number"]) == sorted(t.number for t in study.best_trials) == [0, 2, 3, 5, 8]
    assert df["pareto"].dtype == bool
    assert not df.loc[df["state"] != "COMPLETE", "pareto"].any()


def test_pareto_column_three_objectives(tmp_path):
    rows = [("COMPLETE", 0.5, 100, 10), ("COMPLETE", 0.5, 100, 5), ("COMPLETE", 0.4, 100, 1), ("COMPLETE", 0.3, 200, 20), ("FAIL", None, None, None)]
    study = make_study(tmp_path / "three", rows, three=True)
    df = trials_table(study)
    assert sorted(df.loc[df["pareto"], "number"]) == sorted(t.number for t in study.best_trials) == [1, 2]


def test_empty_study(tmp_path):
    df = trials_table(make_study(tmp_path / "empty", []))
    assert list(df.columns) == list(COLUMNS) and len(df) == 0


def test_csv_round_trip(study, tmp_path):
    df = trials_table(study)
    path = write_trials_csv(df, tmp_path / "out" / "trials.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == list(COLUMNS)
    assert back["number"].tolist() == df["number"].tolist()
    assert back["state"].tolist() == df["state"].tolist()
    assert back["pareto"].tolist() == df["pareto"].tolist()
    np.testing.assert_allclose(back["accuracy"].to_numpy(dtype=float), df["accuracy"].to_numpy(dtype=float))
    assert "4000000" in path.read_text() and "4000000.0" not in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["trials.csv"]  # no temporary left behind


def test_open_run_by_directory_name(run_dir):
    loaded = open_run(run_dir)
    assert loaded.study_name == "demo"
    assert len(loaded.trials) == len(STANDARD)
    assert open_run(str(run_dir), study_name="demo").study_name == "demo"


def test_open_run_renamed_directory_with_one_study(run_dir):
    moved = run_dir.rename(run_dir.parent / "renamed")
    assert open_run(moved).study_name == "demo"


def test_open_run_missing(tmp_path):
    with pytest.raises(ValueError, match="must contain study.db, but got .*nowhere.*no such directory"):
        open_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty' \(it has no study.db\)"):
        open_run(tmp_path / "empty")
    assert not (tmp_path / "empty" / "study.db").exists()  # nothing was created


def test_open_run_wrong_name_lists_studies(run_dir):
    make_study(run_dir, [], name="other")
    with pytest.raises(ValueError, match=r"one of the studies in .*study.db \('demo', 'other'\), but got 'nope'"):
        open_run(run_dir, study_name="nope")
    moved = run_dir.rename(run_dir.parent / "renamed")  # two studies, none named after the directory
    with pytest.raises(ValueError, match="but got 'renamed'"):
        open_run(moved)


def test_open_run_not_a_study(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "study.db").write_text("not a database at all" * 100)
    with pytest.raises(ValueError, match="must be an Optuna study database"):
        open_run(bad)
    other = tmp_path / "other"
    other.mkdir()
    with sqlite3.connect(other / "study.db") as conn:
        conn.execute("CREATE TABLE studies (study_id INTEGER, study_name TEXT)")
    with pytest.raises(ValueError, match="must hold an Optuna study, but it holds none"):
        open_run(other)


def test_network_column_is_exact(study):
    import json

    df = trials_table(study)
    assert json.loads(df.loc[1, "network"]) == NETWORK.replace(particle=PARTICLES[1]).to_dict()


def test_device_columns_come_from_the_evaluation_record(tmp_path):
    import optuna
    from optuna.trial import create_trial

    study = optuna.create_study(directions=["maximize", "minimize"])
    gpu = {"device": "cuda:0 (NVIDIA H200)", "precision": "bf16", "latency_device": "cuda:0 (NVIDIA H200)", "latency_ms": 1.5, "latency_batch_ms": 4.0}
    for attrs in ({"device": "cpu", "precision": "fp32"}, gpu):
        study.add_trial(create_trial(values=[0.5, 1e6], user_attrs={"particle": ParticleSpec().to_dict(), "accuracy": 0.5, "flops": 10**6, "params": 10, **attrs}))
    df = trials_table(study)
    assert df["device"].tolist() == ["cpu", "cuda:0 (NVIDIA H200)"] and df["precision"].tolist() == ["fp32", "bf16"]
    assert pd.isna(df.loc[0, "latency_device"]) and df.loc[1, "latency_batch_ms"] == 4.0
    back = pd.read_csv(write_trials_csv(df, tmp_path / "trials.csv"))
    assert back["device"].tolist() == ["cpu", "cuda:0 (NVIDIA H200)"]


def test_open_run_of_a_journal_not_yet_holding_its_study(tmp_path):
    """A run being started: its journal file exists (several workers) but its study is not created yet."""
    from particle_nas.search import open_storage

    run = tmp_path / "starting"
    run.mkdir()
    open_storage(str(run / "study.journal"))  # the file, and nothing in it yet
    assert (run / "study.journal").is_file()
    with pytest.raises(ValueError, match=r"study.journal must hold an Optuna study, but it holds none\.$"):
        open_run(run)
