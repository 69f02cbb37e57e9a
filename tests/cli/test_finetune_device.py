"""particle-nas finetune trains where train.device says, also on a machine with a GPU (CUDA availability faked: no GPU is used)."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import yaml

from particle_nas.cli import main
from particle_nas.space import NetworkSpec, ParticleSpec, particle_to_record

NETWORK = NetworkSpec(particle=ParticleSpec(factorization="csn_ir"), stem_channels=8, widths=(8, 8), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 8, 8), num_classes=4)


def _files(tmp_path: Path, device: str) -> list[str]:
    network = tmp_path / "net.yaml"
    fields = {k: v for k, v in NETWORK.to_dict().items() if k != "particle"}
    network.write_text(yaml.safe_dump({"particle": particle_to_record(NETWORK.particle), "network": fields}, sort_keys=False))
    data = tmp_path / "data.yaml"
    data.write_text(
        "data:\n  kind: synthetic\n  num_classes: 4\n  train_size: 32\n  val_size: 16\n"
        f"train:\n  epochs: 1\n  batch_size: 8\n  warmup_epochs: 0\n  threads: 1\n  device: {device}\n"
    )
    return ["finetune", str(network), "--data", str(data), "--output-dir", str(tmp_path / "runs"), "--name", "ft", "--no-progress"]


def test_finetune_honours_train_device_cpu_on_a_gpu_machine(tmp_path, capsys) -> None:
    with mock.patch("torch.cuda.is_available", return_value=True):  # before, the model went to CUDA whenever one existed
        assert main(_files(tmp_path, "cpu")) == 0
    assert "1 epochs on cpu" in capsys.readouterr().err
    report = json.loads(next((tmp_path / "runs" / "ft").rglob("report.json")).read_text())
    assert report["device"] == "cpu"


def test_finetune_asking_for_cuda_without_one_is_one_line_before_training(tmp_path, capsys) -> None:
    with mock.patch("torch.cuda.is_available", return_value=False):
        assert main(_files(tmp_path, "cuda")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("particle-nas: error: train.device must be available: cuda was asked but torch.cuda.is_available() is False") and "\n" not in err
    assert not (tmp_path / "runs" / "ft" / "finetune" / "checkpoints").exists()
