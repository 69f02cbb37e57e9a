"""The command line, run as a user runs it: a real process, real files, real Optuna storage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from particle_nas.results import load_network, load_particle
from particle_nas.evaluators import count_cost
from particle_nas.space import NetworkSpec, ParticleSpec, build_network

from cli_tools import TINY, run_cli

def _write(path: Path, doc) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    config = _write(root / "tiny.yaml", TINY)
    done = run_cli("search", str(config), "--no-progress", cwd=root)
    assert done.returncode == 0, done.stderr
    return root, config, done


def test_search_writes_the_run_outputs(tiny_run):
    root, _, done = tiny_run
    run = root / "runs" / "tiny"
    for name in ("study.db", "trials.csv", "pareto.html", "best.yaml"):
        assert (run / name).is_file(), name
    table = pd.read_csv(run / "trials.csv")
    assert len(table) == 3 and set(table["state"]) == {"COMPLETE"}
    for column in ("factorization", "wiring", "temporal_kernel", "prune_ratio", "flops", "params", "accuracy", "duration_s", "state"):
        assert column in table.columns
    tied = table["factorization"].isin(["csn_ir", "depthwise_2plus1d"]) & (table["wiring"] == "residual")  # nothing to prune there
    assert table["accuracy_before_prune"].notna().tolist() == ((table["prune_ratio"] > 0) & ~tied).tolist()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run / 'study.db'}")
    assert len(study.trials) == 3
    assert "3/3 trials finished" in done.stdout


def test_best_yaml_loads_back_and_builds(tiny_run):
    root, _, _ = tiny_run
    best = root / "runs" / "tiny" / "best.yaml"
    particle = load_particle(best)
    network = load_network(best)
    assert isinstance(particle, ParticleSpec) and network.particle == particle
    build_network(network)


def test_rerun_resumes_without_redoing_trials(tiny_run):
    root, config, _ = tiny_run
    run = root / "runs" / "tiny"
    before = pd.read_csv(run / "trials.csv")
    done = run_cli("search", str(config), "--trials", "4", "--no-progress", cwd=root)
    assert done.returncode == 0, done.stderr
    after = pd.read_csv(run / "trials.csv")
    assert len(after) == 4
    pd.testing.assert_frame_equal(after.iloc[:3].drop(columns="pareto"), before.drop(columns="pareto"))
    assert "1 new this run" in done.stdout


def test_cost_and_export(tiny_run):
    root, _, _ = tiny_run
    done = run_cli("cost", "runs/tiny/best.yaml", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "params:" in done.stdout and "FLOPs:" in done.stdout
    for rule in ("knee", "max-accuracy", "min-flops", "flops<=1e12"):
        done = run_cli("export", "runs/tiny", "--pick", rule, "-o", "pick.yaml", cwd=root)
        assert done.returncode == 0, done.stderr
        assert load_particle(root / "pick.yaml")


def test_cost_of_a_bare_particle_file(tmp_path):
    path = _write(tmp_path / "p.yaml", {"factorization": "csn_ir", "wiring": "bottleneck", "temporal_kernel": 5})
    done = run_cli("cost", str(path), "--clip", "16", "112", "112", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "input 3x16x112x112" in done.stdout
    network = load_network(path, default=NetworkSpec()).replace(clip=(16, 112, 112))
    counted = count_cost(build_network(network), input_shape=network.input_shape)  # what the command printed before it went analytic
    assert f"params:   {counted.params:,} " in done.stdout and f"FLOPs:    {counted.flops:,} " in done.stdout
    assert "to train at batch 16 in fp32 with adamw (estimated" in done.stdout


def test_cost_of_an_absurd_clip_is_arithmetic(tmp_path):
    """--clip 4096 4096 4096: nothing is built (fvcore's trace allocated a 824 GB clip and died); the process stays small."""
    path = _write(tmp_path / "p.yaml", {"factorization": "r2plus1d", "wiring": "residual"})
    script = "import resource, sys; from particle_nas.cli import main; code = main(sys.argv[1:]); print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
    done = subprocess.run([sys.executable, "-c", script, "cost", str(path), "--clip", "4096", "4096", "4096"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert "input 3x4096x4096x4096" in done.stdout and "TFLOPs" in done.stdout and "TB to train at batch 16" in done.stdout
    assert int(done.stdout.split("maxrss_kb")[1]) < 1_500_000  # kB: the imports (about 0.3 GB), not a clip


_HUGE_FINETUNE = """
import resource, sys
from particle_nas.cli import main
code = main(sys.argv[1:])
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def test_finetuning_a_network_that_cannot_fit_is_one_line_before_it_is_built(tmp_path):
    """A 1024^3 clip: refused from the estimate against this machine's free memory; no task, no network, no checkpoint."""
    network = _write(tmp_path / "net.yaml", {"particle": {"factorization": "csn_ir"}, "network": {"clip": [1024, 1024, 1024], "num_classes": 4}})
    data = _write(tmp_path / "data.yaml", {"data": {"kind": "synthetic", "num_classes": 4, "train_size": 16, "val_size": 8}, "train": {"epochs": 1, "batch_size": 8, "device": "cpu"}})
    args = ["finetune", str(network), "--data", str(data), "--output-dir", str(tmp_path / "runs"), "--name", "ft", "--no-progress"]
    done = subprocess.run([sys.executable, "-c", _HUGE_FINETUNE, *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("particle-nas: error: out of memory (estimated) on cpu: training must fit in the free memory, but the network needs about ")
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("; lower train.batch_size or the clip, or fine-tune where more memory is free\n")
    assert not list((tmp_path / "runs").rglob("*.pt")) and not list((tmp_path / "runs").rglob("*.safetensors"))
    assert int(done.stdout.split("maxrss_kb")[1]) < 1_500_000  # kB: the imports, not a batch of 1024^3 clips


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--clip", "5000", "16", "16"), "NetworkSpec.clip[0] must be in [1, 4096], but got 5000."),
        (("--batch-size", "1"), "TrainConfig.batch_size must be in [2, 65536], but got 1."),
    ],
)
def test_cost_of_an_invalid_size_is_one_line(tmp_path, args, expected):
    path = _write(tmp_path / "p.yaml", {"factorization": "full", "wiring": "plain"})
    done = run_cli("cost", str(path), *args, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == f"particle-nas: error: {expected}\n"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"space": {"factorization": ["full", "conv4d"]}}, "space.factorization must be one of ('full', 'r2plus1d', 'csn_ip', 'csn_ir', 'spatial_only', 'temporal_shift', 'p3d_b', 'depthwise_2plus1d', 'conv_gru'), but got 'conv4d'."),
        ({"space": {"temporal_kernel": [2]}}, "space.temporal_kernel must be one of (1, 3, 5, 7), but got 2."),
        ({"network": {"widths": [8, 16], "depths": [1, 1], "temporal_strides": [4, 2], "spatial_strides": [1, 2]}}, "network.clip must have at least as many frames as the total temporal stride (8), but got [4, 16, 16]."),
        ({"search": {"trials": "many"}}, "search.trials must be an integer, but got 'many'."),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, change, expected):
    path = _write(tmp_path / "bad.yaml", {**TINY, **change})
    done = run_cli("search", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"particle-nas: error: {path}: {expected}"
    assert not (tmp_path / "runs").exists()  # nothing started, nothing lost


def test_malformed_yaml_is_one_clear_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nspace: {factorization: [full\n")
    done = run_cli("search", str(path), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"particle-nas: error: {path}:3:")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("export", "no/such/run"), "no/such/run"),
        (("cost", "missing.yaml"), "missing.yaml"),
    ],
)
def test_missing_inputs_are_one_clear_line(tmp_path, args, fragment):
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and fragment in done.stderr and "Traceback" not in done.stderr


def test_export_without_output_writes_into_the_run_within_the_budget(tiny_run):
    root, _, _ = tiny_run
    table = pd.read_csv(root / "runs" / "tiny" / "trials.csv")
    complete = table[table["state"] == "COMPLETE"]
    budget = int(complete["flops"].median())
    done = run_cli("export", "runs/tiny", "--pick", f"flops<={budget}", cwd=root)
    assert done.returncode == 0, done.stderr
    document = yaml.safe_load((root / "runs" / "tiny" / "export.yaml").read_text())
    within = complete[complete["flops"] <= budget]
    assert document["source"]["flops"] <= budget
    assert document["source"]["accuracy"] == pytest.approx(within["accuracy"].max())


def test_report_with_another_pick_rewrites_best_yaml(tiny_run):
    root, _, _ = tiny_run
    done = run_cli("report", "runs/tiny", "--pick", "max-accuracy", cwd=root)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(root / "runs" / "tiny" / "trials.csv")
    document = yaml.safe_load((root / "runs" / "tiny" / "best.yaml").read_text())
    assert document["source"]["pick"] == "max-accuracy"
    assert document["source"]["accuracy"] == pytest.approx(table["accuracy"].max())


def test_flags_override_the_config_file(tmp_path):
    config = _write(tmp_path / "tiny.yaml", {**TINY, "search": {**TINY["search"], "trials": 3}})
    done = run_cli("search", str(config), "--trials", "2", "--seed", "1", "--name", "longer", "--output-dir", "out", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "out" / "longer"
    assert len(pd.read_csv(run / "trials.csv")) == 2
    study = optuna.load_study(study_name="longer", storage=f"sqlite:///{run / 'study.db'}")
    assert study.user_attrs["seed"] == 1 and study.user_attrs["config"]["seed"] == 1
    assert not (tmp_path / "runs").exists()
