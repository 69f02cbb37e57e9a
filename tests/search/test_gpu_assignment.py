"""GPUs for local workers and Ray trials, tested on the CPU with a faked CUDA device count.

Worker i trains on GPU i mod G (of --gpus, else of every visible GPU); without --workers the local engine
runs search.trials_per_gpu workers per GPU; a Ray trial trains on the GPU Ray gave it (its cuda:0); on a
machine without CUDA nothing changes. The evaluator is a tiny fake that scores a spec from its analytic
cost and reports the device it was asked to train on (there is no GPU here to train on).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from particle_nas.cli import main
from particle_nas.evaluators import Evaluator, default_workers
from particle_nas.results import open_run, trials_table
from particle_nas.search import LocalEngine, SearchJob, SearchSettings, open_study, read_run_file, run, write_run_file
from particle_nas.search import _local
from particle_nas.space import NetworkSpec, SearchSpace, SpecError, cost

SPACE = SearchSpace.from_dict(
    {"factorization": ["full", "r2plus1d", "csn_ir"], "wiring": ["plain", "residual"], "temporal_kernel": [1, 3, 5], "activation": ["relu", "silu"], "squeeze_excite": [0.0, 0.25, 0.5]}
)
NETWORK = NetworkSpec(stem_channels=8, widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16))


@dataclass(frozen=True)
class DeviceEvaluator(Evaluator):
    """Accuracy from the spec's analytic cost; the record's ``device`` is the one the evaluator was put on."""

    device: str = "auto"
    precision: str = "auto"
    epochs: int = 1

    def on_device(self, device: str) -> DeviceEvaluator:
        return dataclasses.replace(self, device=device)

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        spent = cost(spec)
        accuracy = 0.3 + 0.05 * spec.particle.temporal_kernel + 0.02 * math.log(spent.flops)
        return {"accuracy": accuracy, "flops": spent.flops, "params": spent.params, "device": self.device, "precision": self.precision}


def make_job(tmp_path: Path, *, trials: int = 1, gpus=None, workers=1, trials_per_gpu: int = 1, device: str = "auto", backend: str = "optuna") -> SearchJob:
    settings = SearchSettings(sampler="random", trials=trials, trials_per_gpu=trials_per_gpu, backend=backend)
    return SearchJob(
        run_dir=tmp_path / "run", name="gpus", space=SPACE, network=NETWORK, evaluator=DeviceEvaluator(device=device),
        settings=settings, seed=0, fingerprint={"seed": 0}, config={}, workers=workers, gpus=gpus,
    )  # fmt: skip


@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend this process sees ``n`` CUDA GPUs (torch.cuda.is_available and device_count only; nothing runs on them)."""

    def fake(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return fake


@pytest.mark.parametrize(
    ("gpu_count", "device", "gpus", "per_gpu", "expected"),
    [
        (0, "auto", None, 4, 1),  # the CPU: one worker, as before
        (4, "cpu", None, 4, 1),  # the CPU asked for on a GPU machine
        (4, "auto", None, 1, 4),
        (4, "cuda", None, 3, 12),
        (4, "auto", (0, 2), 2, 4),
        (4, "cuda:1", None, 3, 3),  # one named GPU
    ],
)
def test_default_workers_are_trials_per_gpu_per_gpu(fake_gpus, tmp_path, gpu_count, device, gpus, per_gpu, expected):
    fake_gpus(gpu_count)
    assert default_workers(device, gpus=gpus, trials_per_gpu=per_gpu) == expected
    job = make_job(tmp_path, workers=None, gpus=gpus, trials_per_gpu=per_gpu, device=device)
    assert LocalEngine().writers(job) == expected
    assert LocalEngine().writers(dataclasses.replace(job, workers=2)) == 2  # --workers wins


@pytest.mark.parametrize(
    ("gpus", "per_gpu", "expected"),
    [
        (None, 1, ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1", "cuda:2"]),  # 3 GPUs: worker i on GPU i mod 3
        (None, 2, ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1", "cuda:2"]),  # 2 per GPU: the first 3 workers on distinct GPUs
        ((2, 0), 1, ["cuda:2", "cuda:0", "cuda:2", "cuda:0", "cuda:2", "cuda:0"]),  # --gpus 2,0
    ],
)
def test_each_worker_trains_on_its_gpu(fake_gpus, tmp_path, gpus, per_gpu, expected):
    fake_gpus(3)
    job = make_job(tmp_path, gpus=gpus, trials_per_gpu=per_gpu, workers=None)
    job = dataclasses.replace(job, run_dir=job.run_dir.resolve(), storage=job.layout.storage(workers=6))
    open_study(job)
    for worker in range(6):  # each worker process's entry, one trial each
        assert _local.work(dataclasses.replace(job, settings=dataclasses.replace(job.settings, trials=worker + 1)), deadline=None, worker=worker) is False
    table = trials_table(open_run(job.run_dir, study_name=job.name)).sort_values("number")
    trained = table["duplicate_of"].isna()  # a repeated particle reuses its first trial's record, device included
    assert trained.sum() >= 5
    assert list(table["device"][trained]) == [device for device, new in zip(expected, trained) if new]


def test_without_cuda_workers_train_on_the_cpu_and_run_json_records_what_was_asked(fake_gpus, tmp_path):
    fake_gpus(0)
    job = make_job(tmp_path, trials=2, workers=None, trials_per_gpu=4)
    summary = run(job, progress=False)
    assert summary.complete == 2
    assert set(trials_table(open_run(job.run_dir, study_name=job.name))["device"]) == {"cpu"}
    started = read_run_file(job.run_dir)
    assert {k: started[k] for k in ("device", "precision", "gpus", "trials_per_gpu", "workers", "processes")} == {
        "device": "auto", "precision": "auto", "gpus": None, "trials_per_gpu": 4, "workers": None, "processes": 1,
    }  # fmt: skip


def test_run_json_records_the_gpus(fake_gpus, tmp_path):
    fake_gpus(2)
    job = make_job(tmp_path, gpus=(1,), workers=1)
    assert run(job, progress=False).complete == 1
    assert read_run_file(job.run_dir)["gpus"] == [1]
    assert list(trials_table(open_run(job.run_dir, study_name=job.name))["device"]) == ["cuda:1"]


@pytest.mark.parametrize("sampler", ["ray", "progressive"])
def test_engines_that_do_not_place_workers_refuse_gpus(tmp_path, sampler):
    job = make_job(tmp_path, gpus=(0,))
    if sampler == "ray":
        job = dataclasses.replace(job, settings=SearchSettings(sampler="random", trials=1, backend="ray"))
    else:
        job = dataclasses.replace(job, settings=SearchSettings(sampler="progressive", flops_budget=1e7, trials=1))
    with pytest.raises(ValueError, match=r"^gpus must be left out with the (ray|progressive) engine"):
        run(job, progress=False)


def test_trials_per_gpu_is_validated():
    with pytest.raises(SpecError, match=r"search.trials_per_gpu must be in \[1, 64\], but got 0"):
        SearchSettings(trials_per_gpu=0)
    with pytest.raises(SpecError, match=r"search.trials_per_gpu must be 1 with the ray backend"):
        SearchSettings(trials_per_gpu=2, backend="ray")


@pytest.mark.parametrize(("gpu_ids", "expected"), [([], "cpu"), ([0], "cuda:0"), ([3], "cuda:0")])
def test_a_ray_trial_trains_on_the_gpu_ray_gave_it(tmp_path, monkeypatch, gpu_ids, expected):
    """Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU (its cuda:0); a trial asking gpu 0 stays on the CPU."""
    pytest.importorskip("ray.tune", reason='the ray backend needs pip install "ray[tune]"')
    from ray import tune

    from particle_nas.search import _ray_trials

    reports = []
    monkeypatch.setattr(tune, "report", reports.append)
    monkeypatch.setattr(_ray_trials, "ray_gpu_ids", lambda: list(gpu_ids))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only driver; Ray's GPU ids alone decide
    job = make_job(tmp_path, backend="ray")
    particle = json.dumps({"factorization": "full", "wiring": "plain", "temporal_kernel": 3})
    _ray_trials._train_particle({"particle": particle, "weights": "weights/trial-0.safetensors"}, job)
    assert reports[-1]["finished"] is True
    assert json.loads(reports[-1]["record"])["device"] == expected


# ---------------------------------------------------------------- the CLI
TINY = {
    "name": "tiny",
    "seed": 3,
    "search": {"sampler": "random", "trials": 1},
    "space": {"factorization": ["full"], "wiring": ["plain"], "temporal_kernel": [3]},
    "network": {"stem_channels": 8, "widths": [8], "depths": [1], "temporal_strides": [1], "spatial_strides": [1]},
    "data": {"clip": [4, 16, 16], "train_size": 16, "val_size": 8},
    "train": {"epochs": 1, "batch_size": 8},
}


def _config(tmp_path: Path, **sections) -> Path:
    doc = {**TINY, "output_dir": str(tmp_path / "runs"), **{k: {**TINY.get(k, {}), **v} for k, v in sections.items()}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("gpu_count", "sections", "gpus", "message"),
    [
        (0, {}, "0", "--gpus must be left out on a machine without CUDA (torch.cuda.is_available() is False"),
        (2, {}, "0,2", "--gpus must name GPUs this machine has (torch.cuda.device_count() is 2), but got '0,2'."),
        (2, {}, "0,0", "--gpus must not repeat a GPU, but got '0,0'."),
        (2, {}, "one", "--gpus must be GPU indices separated by commas, e.g. 0,1,3, but got 'one'."),
        (2, {"train": {"device": "cpu"}}, "0", "--gpus must be left out when train.device is cpu"),
        (2, {"search": {"backend": "ray"}}, "0", "--gpus must be left out with the ray engine"),
    ],
)
def test_bad_gpus_are_one_line_and_exit_2_before_any_trial(fake_gpus, tmp_path, capsys, gpu_count, sections, gpus, message):
    fake_gpus(gpu_count)
    assert main(["search", str(_config(tmp_path, **sections)), "--gpus", gpus, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("particle-nas: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "runs" / "tiny").exists()  # refused before the run directory is made


def test_cuda_is_refused_before_any_trial(fake_gpus, tmp_path, capsys):
    fake_gpus(0)
    assert main(["search", str(_config(tmp_path, train={"device": "cuda"})), "--no-progress"]) == 2
    assert "train.device must be available: cuda was asked" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "tiny").exists()


def test_resume_keeps_the_gpus_the_run_was_started_with(tmp_path, monkeypatch):
    from particle_nas import cli

    assert main(["search", str(_config(tmp_path)), "--no-progress"]) == 0  # the CPU: no --gpus
    run_dir = tmp_path / "runs" / "tiny"
    assert read_run_file(run_dir)["gpus"] is None
    asked = []
    monkeypatch.setattr(cli, "_search", lambda config, **kwargs: asked.append(kwargs["gpus"]) or 0)
    write_run_file(run_dir, gpus=[1, 0])  # as a run started with --gpus 1,0 records them
    assert main(["resume", str(run_dir), "--no-progress"]) == 0
    assert main(["resume", str(run_dir), "--gpus", "0", "--no-progress"]) == 0
    assert asked == [[1, 0], "0"]


@pytest.mark.slow  # spawns two worker processes (about 25 s on the loaded 2-core VM)
def test_the_documented_gpus_command_runs(fake_gpus, tmp_path, capsys):
    """docs/gpu.md's `search CONFIG --gpus 0,1 --workers N`: the parent (seeing 2 faked GPUs) accepts and records them.

    The worker processes start afresh and see this machine as it is (no CUDA), so they train on the CPU.
    """
    fake_gpus(2)
    assert main(["search", str(_config(tmp_path, search={"trials": 2})), "--gpus", "0,1", "--workers", "2", "--no-progress"]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    started = read_run_file(run_dir)
    assert (started["gpus"], started["workers"], started["processes"]) == ([0, 1], 2, 2)
    table = trials_table(open_run(run_dir))
    assert len(table) == 2 and set(table["device"].dropna()) == {"cpu"}
