from __future__ import annotations

import pandas as pd
import pytest

from particle_nas.results import RunOutputs, load_network, load_particle, open_run, write_run_outputs

from results_study import NETWORK, PARTICLES, make_study


def test_writes_everything(run_dir):
    outputs = write_run_outputs(open_run(run_dir), run_dir)
    assert isinstance(outputs, RunOutputs)
    assert outputs.trials_csv == run_dir / "trials.csv" and outputs.trials_csv.is_file()
    assert outputs.pareto_html == run_dir / "pareto.html" and outputs.pareto_html.is_file()
    assert outputs.best_yaml == run_dir / "best.yaml" and outputs.best_yaml.is_file()
    assert (outputs.n_trials, outputs.n_complete, outputs.n_failed, outputs.n_pareto) == (11, 7, 1, 5)
    assert outputs.chosen == 3 and outputs.pick == "knee"
    assert len(pd.read_csv(outputs.trials_csv)) == 11
    assert load_particle(outputs.best_yaml) == PARTICLES[3]
    assert load_network(outputs.best_yaml) == NETWORK.replace(particle=PARTICLES[3])
    assert "run 'demo'" in outputs.best_yaml.read_text()
    with pytest.raises(Exception):
        outputs.n_complete = 0  # frozen


def test_other_pick_rule(run_dir):
    outputs = write_run_outputs(open_run(run_dir), run_dir, pick="flops<=2e6")
    assert outputs.chosen == 2
    assert "(rule 'flops<=2e6')" in outputs.best_yaml.read_text()


def test_unsatisfiable_pick_raises_after_table_and_figure(run_dir):
    with pytest.raises(ValueError, match="no complete trial satisfies flops<=10; the smallest flops is 1000000."):
        write_run_outputs(open_run(run_dir), run_dir, pick="flops<=10")
    assert (run_dir / "trials.csv").is_file() and (run_dir / "pareto.html").is_file()
    assert not (run_dir / "best.yaml").exists()


def test_no_complete_trial_writes_table_then_raises(tmp_path):
    run = tmp_path / "failed"
    study = make_study(run, [("FAIL", None, None, None), ("RUNNING", None, None, None), ("FAIL", None, None, None)])
    with pytest.raises(ValueError) as err:
        write_run_outputs(study, run)
    message = str(err.value)
    assert message.startswith("study 'failed' must have a COMPLETE trial to plot and pick from, but got 2 FAIL, 1 RUNNING;")
    assert "trials.csv only." in message and "The first failure: trial 0: CUDA out of memory." in message
    assert len(pd.read_csv(run / "trials.csv")) == 3
    assert not (run / "pareto.html").exists() and not (run / "best.yaml").exists()
