"""particle-nas finetune as 2 processes on the CPU (gloo), launched by torchrun as a user would, killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from particle_nas.space import NetworkSpec, ParticleSpec, particle_to_record

NETWORK = NetworkSpec(
    particle=ParticleSpec(factorization="csn_ir", wiring="residual", temporal_kernel=3),
    stem_channels=8, widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16), num_classes=2,
)
EPOCHS = 12


def command(tmp_path: Path) -> tuple[list[str], list[str]]:
    """(torchrun's part, particle-nas's part) of the command line."""
    network = tmp_path / "net.yaml"
    network.write_text(yaml.safe_dump({"particle": particle_to_record(NETWORK.particle), "network": {k: v for k, v in NETWORK.to_dict().items() if k != "particle"}}))
    data = tmp_path / "data.yaml"
    data.write_text(
        "name: ddp\ndata:\n  kind: synthetic\n  num_classes: 2\n  train_size: 256\n  val_size: 32\n  difficulty: 0.0\n"
        f"train:\n  epochs: {EPOCHS}\n  batch_size: 16\n  lr: 0.01\n  warmup_epochs: 0\n  threads: 1\n"
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return torchrun, ["-m", "particle_nas", "finetune", str(network), "--data", str(data), "--output-dir", str(tmp_path / "runs"), "--no-progress"]


def workers(launcher: int) -> list[int]:
    """The training processes torchrun started (its children)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    return [int(pid) for pid in children]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_two_processes_train_shard_without_overlap_checkpoint_once_and_resume_after_sigkill(tmp_path: Path) -> None:
    torchrun, particle_nas = command(tmp_path)
    argv = [*torchrun, *particle_nas]
    out = tmp_path / "runs" / "ddp" / "finetune"
    checkpoint = out / "checkpoints" / "last.pt"
    launcher = subprocess.Popen(argv, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert checkpoint.exists(), launcher.communicate()[0].decode()[-2000:]
    ranks = workers(launcher.pid)
    assert len(ranks) == 2
    os.kill(ranks[1], signal.SIGKILL)  # one training process dies mid-run: torchrun stops the other and fails
    assert launcher.wait(timeout=60) != 0
    assert not any(alive(pid) for pid in ranks)
    import torch

    killed_at = int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"])
    assert 1 <= killed_at < EPOCHS and not (out / "report.json").exists()

    done = subprocess.run(argv, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"continuing after epoch {killed_at}" in done.stderr and "x 2 processes (gloo)" in done.stderr
    assert done.stderr.count("particle-nas: fine-tune 'ddp'") == 1 and done.stdout.count("wrote ") == 1  # rank 0 speaks and writes
    report = json.loads((out / "report.json").read_text())
    losses = [e["train_loss"] for e in report["epochs"]]
    assert report["resumed_from"] == killed_at and len(losses) == EPOCHS and losses[-1] < 0.7 * losses[0]
    assert report["distributed"] == {"processes": 2, "backend": "gloo", "train_clips": 256, "clips_per_process": [128, 128], "overlapping_clips": 0, "covered_clips": 256}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]  # one checkpoint, no temporary files left
    assert int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]) == EPOCHS

    single = subprocess.run([sys.executable, *particle_nas], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert single.returncode == 2 and "processes" in single.stderr  # one process may not continue a 2-process run: another batch order
