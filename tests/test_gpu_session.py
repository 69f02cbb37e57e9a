"""The prepared GPU run (bench/gpu_session.sh): its wheelhouse, the project installed by package-dir, the bench's
error capture, and the whole session as a dry run on the CPU, so that the one GPU call cannot rot unseen."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_wheelhouse_holds_exactly_what_the_gpu_image_lacks() -> None:
    wheelhouse = _load("gpu_wheelhouse")
    missing = wheelhouse.missing(wheelhouse.project_requirements())
    assert set(missing) == {"optuna", "alembic", "sqlalchemy", "mako", "colorlog", "torch-pruning", "plotly", "fvcore", "iopath", "yacs", "termcolor"}
    assert all(missing.values())  # pinned to what is installed (and tested) here
    assert "torch" not in missing and "numpy" not in missing  # the image's CUDA torch and its numpy stay


def test_a_wheelhouse_of_other_tags_or_too_big_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheelhouse = _load("gpu_wheelhouse")
    packages = {"optuna": "5.1.0", "sqlalchemy": "2.1.9"}
    good = [tmp_path / "optuna-5.1.0-py3-none-any.whl", tmp_path / "sqlalchemy-2.1.9-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]
    for wheel in good:
        wheel.write_bytes(b"x" * 1000)
    wheelhouse.check_bundle(good, packages)
    wrong = tmp_path / "sqlalchemy-2.1.9-cp311-cp311-manylinux_2_17_x86_64.whl"
    wrong.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"must be a py3-none-any or cp312 x86-64 wheel, but its tags are cp311-cp311-manylinux_2_17_x86_64"):
        wheelhouse.check_bundle([good[0], wrong], packages)
    with pytest.raises(ValueError, match=r"must hold one wheel per missing package \['optuna', 'sqlalchemy'\], but it holds \['optuna'\]"):
        wheelhouse.check_bundle(good[:1], packages)
    monkeypatch.setattr(wheelhouse, "BUNDLE_LIMIT", 1500)
    with pytest.raises(ValueError, match=r"must stay under 0 MiB, but it holds 0.0 MiB"):
        wheelhouse.check_bundle(good, packages)


def test_the_project_installed_by_package_dir_imports_from_anywhere(tmp_path: Path) -> None:
    """What the GPU machine does instead of PYTHONPATH=. (which cannot map particle_nas.space to space/)."""
    site = tmp_path / "site"
    names = _load("gpu_wheelhouse").install_project(site)
    assert names[0] == "particle_nas" and (site / "particle_nas" / "space" / "_spec.py").is_file()
    code = "import particle_nas.evaluators as e, particle_nas.search as s; print(e.__file__); print(s.__file__)"
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(line.startswith(str(site)) for line in done.stdout.split())  # the copy, not this checkout's editable install


def test_a_failing_bench_step_becomes_a_row_and_the_next_step_still_runs(tmp_path: Path) -> None:
    gpu = _load("gpu")

    def broken() -> list:
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore")

    steps = [("first", lambda: [gpu.row("first", "a", "per trial", 1.0, "s")]), ("broken", broken), ("last", lambda: [gpu.row("last", "b", "per trial", 2.0, "s")])]
    rows = gpu.run_steps(steps, out=tmp_path, about={"gpu": "none"}, deadline=float("inf"))
    assert [(r["step"], r["metric"]) for r in rows] == [("first", "per trial"), ("broken", "error"), ("last", "per trial")]
    assert rows[1]["value"] == "RuntimeError: CUDA error: an illegal memory access was encountered more"
    assert json.loads((tmp_path / "gpu.json").read_text())["rows"] == rows and sorted(p.name for p in tmp_path.iterdir()) == ["gpu.csv", "gpu.json"]
    late = gpu.run_steps(steps[:1], out=tmp_path, about={}, deadline=0.0)
    assert late == [gpu.row("first", "first", "skipped", "out of time (--budget)")]


@pytest.mark.slow
def test_the_gpu_session_dry_run_passes_on_the_cpu(tmp_path: Path) -> None:
    """bench/gpu_session.sh --dry-run: the same script a GPU machine runs, at toy sizes on the CPU."""
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_session.sh"), "--dry-run"], env={**os.environ, "OUT": str(out), "PYTHON": sys.executable}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["env.txt", "gpu.csv", "gpu.json", "session.log", "smoke.jsonl"]  # few, small files
    env = (out / "env.txt").read_text().splitlines()
    assert env[0].startswith("python ") and " torch " in env[0] and env[1].startswith("cuda available False")
    checks = [json.loads(line) for line in (out / "smoke.jsonl").read_text().splitlines()]
    assert len(checks) == 8 and all(c["ok"] for c in checks), checks
    assert checks[0]["trained"] >= 2 * 40 and not checks[0]["failed"]
    rows = json.loads((out / "gpu.json").read_text())["rows"]
    assert not [r for r in rows if r["metric"] in ("error", "skipped")], rows
    steps = {(r["step"], r["case"]) for r in rows}
    assert {"quickstart", "scaling", "settings", "gpu vs cpu", "latency"} == {s for s, _ in steps}
    assert {c for s, c in steps if s == "settings"} == {"cudnn.benchmark off", "memory format channels_last_3d", "memory format contiguous", "fused AdamW"}
