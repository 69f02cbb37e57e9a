"""What a real search leaves for others to use: ``particle-nas export --weights / --format``
(trained weights, TorchScript, ONNX run by onnxruntime) and the study as optuna-dashboard serves it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from contextlib import contextmanager
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

import particle_nas
from particle_nas.config import load_config
from particle_nas.evaluators import ProxyEvaluator, evaluate_accuracy
from particle_nas.results import load_network

# Two distinct particles over four trials: the random sampler must repeat one, so a duplicate is reused.
DUP = {
    "name": "dup",
    "seed": 5,
    "search": {"sampler": "random", "trials": 4},
    "space": {"factorization": ["temporal_shift"], "wiring": ["residual"], "temporal_kernel": [3], "prune_ratio": [0.0, 0.5]},
    "network": {"stem_channels": 8, "widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"clip": [4, 16, 16], "train_size": 48, "val_size": 24},
    "train": {"epochs": 1, "batch_size": 16},
}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "particle_nas", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dup_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    (root / "dup.yaml").write_text(yaml.safe_dump(DUP))
    done = run_cli("search", "dup.yaml", "--no-progress", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def _trials(root: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="dup", storage=f"sqlite:///{root / 'runs/dup/study.db'}").trials


def test_every_trial_points_at_its_weights_and_duplicates_share_them(dup_run):
    trials = _trials(dup_run)
    assert all(t.state.name == "COMPLETE" for t in trials)
    duplicates = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert duplicates, "4 trials over 2 particles must reuse one"
    for t in trials:
        source = t.user_attrs.get("duplicate_of", t.number)
        assert t.user_attrs["weights"] == f"weights/trial-{source:05d}.safetensors"
        assert (dup_run / "runs/dup" / t.user_attrs["weights"]).is_file()
    saved = sorted(p.name for p in (dup_run / "runs/dup/weights").iterdir())
    assert len(saved) == len(trials) - len(duplicates)  # reused trials train nothing and save nothing


@pytest.mark.slow
def test_search_and_report_write_the_dashboard(dup_run):
    page = dup_run / "runs/dup/dashboard.html"
    assert page.is_file() and (dup_run / "runs/dup/pareto.html").is_file()
    page.unlink()
    done = run_cli("report", "runs/dup", cwd=dup_run)
    assert done.returncode == 0, done.stderr
    assert "dashboard.html" in done.stdout and page.is_file()
    assert 'id="pareto-flops"' in page.read_text(encoding="utf-8")


@pytest.mark.slow
def test_exported_weights_reproduce_the_recorded_accuracy(dup_run):
    done = run_cli("export", "runs/dup", "--pick", "max-accuracy", "--weights", "-o", "best.yaml", cwd=dup_run)
    assert done.returncode == 0, done.stderr
    weights = dup_run / "best.safetensors"
    assert f"weights: {weights.name}" in done.stdout or str(weights.name) in done.stdout
    network = load_network(dup_run / "best.yaml")
    model = particle_nas.build_network(network)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(weights), strict=True)
    config = load_config(dup_run / "dup.yaml")
    task = ProxyEvaluator(data=config.data, train=config.train).task()
    recorded = yaml.safe_load((dup_run / "best.yaml").read_text())["source"]["accuracy"]
    assert evaluate_accuracy(model.eval(), task.val) == pytest.approx(recorded, abs=1e-9)
    untrained = particle_nas.build_network(network, seed=123).eval()
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), untrained.state_dict().values()))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_onnx_round_trip_matches_pytorch(dup_run):
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install -e '.[test]')")
    pytest.importorskip("onnx", reason="needs onnx (pip install -e '.[test]')")
    done = run_cli("export", "runs/dup", "--pick", "knee", "--format", "onnx", "--format", "torchscript", "-o", "knee.yaml", cwd=dup_run)
    assert done.returncode == 0, done.stderr
    network = load_network(dup_run / "knee.yaml")
    trial = yaml.safe_load((dup_run / "knee.yaml").read_text())["source"]["trial"]
    source = next(t for t in _trials(dup_run) if t.number == trial)
    from safetensors.torch import load_file

    model = particle_nas.build_network(network)
    model.load_state_dict(load_file(dup_run / "runs/dup" / source.user_attrs["weights"]))
    model.eval()
    clips = torch.randn(3, *network.input_shape, generator=torch.Generator().manual_seed(0))  # batch 3: the batch axis is dynamic
    with torch.no_grad():
        expected = model(clips).numpy()
    session = ort.InferenceSession(str(dup_run / "knee.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"clip": clips.numpy()})
    assert got.shape == (3, network.num_classes)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    scripted = torch.jit.load(str(dup_run / "knee.pt"))
    with torch.no_grad():
        np.testing.assert_allclose(scripted(clips).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_weights_of_a_run_without_them_is_one_clear_line(dup_run):
    study = optuna.load_study(study_name="dup", storage=f"sqlite:///{dup_run / 'runs/dup/study.db'}")
    plain = optuna.create_study(study_name="old", storage=f"sqlite:///{dup_run / 'old.db'}", directions=study.directions)
    for key, value in study.user_attrs.items():
        plain.set_user_attr(key, value)
    for t in study.trials:
        attrs = {k: v for k, v in t.user_attrs.items() if k != "weights"}
        plain.add_trial(optuna.trial.create_trial(state=t.state, values=t.values, params=t.params, distributions=t.distributions, user_attrs=attrs))
    (dup_run / "runs/old").mkdir()
    (dup_run / "old.db").rename(dup_run / "runs/old/study.db")
    done = run_cli("export", "runs/old", "--weights", cwd=dup_run)
    assert done.returncode == 2
    assert done.stderr.startswith("particle-nas: error: trial ") and "must have saved weights" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli("export", "runs/old", "--format", "onnx", cwd=dup_run)  # no weights: untrained model, with a note
    assert done.returncode == 0, done.stderr
    assert "untrained" in done.stderr and (dup_run / "runs/old/export.onnx").is_file()


# ---------------------------------------------------------------- optuna-dashboard
class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # no request lines in the test output
        pass


@contextmanager
def serving(app):
    """``app`` on 127.0.0.1 at a free port, in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, server_class=WSGIServer, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read().decode())


def test_optuna_dashboard_serves_the_study_as_it_is(dup_run):
    optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="needs optuna-dashboard (pip install -e '.[test]')")
    storage = f"sqlite:///{dup_run / 'runs/dup/study.db'}"
    trials = _trials(dup_run)
    with serving(optuna_dashboard.wsgi(storage)) as base:
        studies = _get(f"{base}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["dup"]
        assert studies[0]["directions"] == ["maximize", "minimize"]
        detail = _get(f"{base}/api/studies/{studies[0]['study_id']}")
        assert detail["name"] == "dup"
        assert detail.get("objective_names") == ["accuracy", "flops"]
        served = sorted(detail["trials"], key=lambda t: t["number"])
        assert [t["number"] for t in served] == [t.number for t in trials]
        for mine, theirs in zip(trials, served):
            attrs = {a["key"]: a["value"] for a in theirs["user_attrs"]}
            assert json.loads(attrs["particle"]) == mine.user_attrs["particle"]  # the particle, readable there
            assert json.loads(attrs["network"]) == mine.user_attrs["network"]
            assert float(attrs["accuracy"]) == mine.user_attrs["accuracy"]
            assert [v for v in theirs["values"]] == pytest.approx(mine.values)
        assert len(detail["best_trials"]) >= 1
        page = urllib.request.urlopen(f"{base}/dashboard", timeout=30)
        assert page.status == 200 and b"<html" in page.read().lower()


# ---------------------------------------------------------------- a run directory from someone else
SMALL = particle_nas.NetworkSpec(stem_channels=4, widths=(4, 8), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16), num_classes=3)


class _Touch:
    """Unpickling this object creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def crafted_run(root: Path, weights: str) -> Path:
    """``root/runs/crafted``: one COMPLETE trial whose ``weights`` attribute is ``weights``, as a study from elsewhere could say."""
    run = root / "runs" / "crafted"
    (run / "weights").mkdir(parents=True)
    study = optuna.create_study(study_name="crafted", storage=f"sqlite:///{run}/study.db", directions=["maximize", "minimize"])
    study.set_user_attr("objectives", [{"name": "accuracy", "direction": "maximize"}, {"name": "flops", "direction": "minimize"}])
    attrs = dict(particle=SMALL.particle.to_dict(), network=SMALL.to_dict(), accuracy=0.5, flops=1000, params=100, weights=weights)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, values=[0.5, 1000], user_attrs=attrs))
    return run


def _export(run: Path, *args: str, capsys) -> tuple[int, list[str]]:
    from particle_nas.cli import main

    status = main(["export", str(run), *args])
    return status, capsys.readouterr().err.strip().splitlines()


def test_export_copies_a_safetensors_file_of_the_run(tmp_path, capsys):
    from particle_nas.results._deploy import save_state_dict

    run = crafted_run(tmp_path, "weights/trial-00000.safetensors")
    model = particle_nas.build_network(SMALL, seed=3)
    save_state_dict(model, run / "weights/trial-00000.safetensors")
    status, err = _export(run, "--weights", "--format", "torchscript", capsys=capsys)
    assert status == 0, err
    assert (run / "export.safetensors").read_bytes() == (run / "weights/trial-00000.safetensors").read_bytes()
    assert (run / "export.pt").is_file()


@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlink", "symlinked-folder"])
@pytest.mark.parametrize("flags", [("--weights",), ("--format", "torchscript")])
def test_export_refuses_weights_outside_the_run(tmp_path, capsys, where, flags):
    from particle_nas.results._deploy import save_state_dict

    secret = tmp_path / "elsewhere" / "secret.safetensors"  # a real safetensors file: only its place is wrong
    secret.parent.mkdir()
    save_state_dict(particle_nas.build_network(SMALL), secret)
    relative = {"dotdot": "../../elsewhere/secret.safetensors", "absolute": str(secret)}.get(where, "weights/trial-00000.safetensors")
    run = crafted_run(tmp_path, relative if where != "symlinked-folder" else "linked/secret.safetensors")
    if where == "symlink":
        (run / "weights/trial-00000.safetensors").symlink_to(secret)
    if where == "symlinked-folder":
        (run / "linked").symlink_to(secret.parent)
    status, err = _export(run, *flags, capsys=capsys)
    assert status == 2 and len(err) == 1
    assert err[0].startswith("particle-nas: error: trial 0's weights must be a file inside the run directory") and "resolving to" in err[0]
    assert not (run / "export.safetensors").exists() and not (run / "export.pt").exists()


@pytest.mark.parametrize("flags", [("--weights",), ("--format", "torchscript")])
def test_export_never_unpickles_a_file_named_safetensors(tmp_path, capsys, flags):
    import pickle

    marker = tmp_path / "unpickled"
    run = crafted_run(tmp_path, "weights/trial-00000.safetensors")
    (run / "weights/trial-00000.safetensors").write_bytes(pickle.dumps(_Touch(marker)))
    status, err = _export(run, *flags, capsys=capsys)
    assert status == 2 and len(err) == 1
    assert err[0].startswith("particle-nas: error: trial 0's weights must load as safetensors, but ")
    assert not marker.exists() and not (run / "export.safetensors").exists()
    pickle.loads((run / "weights/trial-00000.safetensors").read_bytes())  # the crafted file is live: loading it would have left the marker
    assert marker.exists()


def test_export_refuses_weights_that_are_not_safetensors_by_name(tmp_path, capsys):
    run = crafted_run(tmp_path, "weights/trial-00000.pt")
    torch.save(particle_nas.build_network(SMALL).state_dict(), run / "weights/trial-00000.pt")
    status, err = _export(run, "--weights", capsys=capsys)
    assert status == 2 and err == ["particle-nas: error: trial 0's weights must be a .safetensors file, but got 'weights/trial-00000.pt'."]
