"""The one atomic writer: bytes or a streaming writer, and a full disk that leaves the old file and no temporary one."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from particle_nas.evaluators._files import write_atomically
from particle_nas.evaluators._finetune import save_best


@pytest.fixture
def full_disk(tmp_path: Path, tmpfs) -> Path:
    """A real 64 KiB tmpfs holding ``old.bin`` and filled to its last byte."""
    return tmpfs(tmp_path / "disk", "64k", files={"old.bin": b"old"}, full=True)


def test_a_streaming_writer_writes_what_the_bytes_would(tmp_path: Path) -> None:
    record = {"weights": torch.arange(1000, dtype=torch.float32), "epoch": 3}
    write_atomically(tmp_path / "a" / "streamed.pt", lambda handle: torch.save(record, handle))
    loaded = torch.load(tmp_path / "a" / "streamed.pt", weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["weights"], record["weights"])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["streamed.pt"]


@pytest.mark.parametrize("streamed", [False, True], ids=["bytes", "streamed"])
def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary_one(full_disk: Path, streamed: bool) -> None:
    big = torch.zeros(64 * 1024)  # 256 KiB: more than the whole disk
    data = (lambda handle: torch.save(big, handle)) if streamed else big.numpy().tobytes()
    with pytest.raises(OSError) as caught:
        write_atomically(full_disk / "old.bin", data)
    assert caught.value.errno == errno.ENOSPC
    assert (full_disk / "old.bin").read_bytes() == b"old"
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "old.bin"]


def test_fine_tuning_s_best_weights_on_a_full_disk_leave_no_temporary_file(full_disk: Path, tmp_path: Path) -> None:
    model = nn.Linear(256, 256)  # 257 KiB of float32
    with pytest.raises(OSError):
        save_best(model, full_disk / "best.safetensors", epoch=1, val_top1=0.5)
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "old.bin"]
    save_best(model, tmp_path / "best.safetensors", epoch=1, val_top1=0.5)  # and where there is room, it loads back
    assert torch.equal(load_file(tmp_path / "best.safetensors")["weight"], model.weight.detach())
