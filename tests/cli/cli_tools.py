"""Shared by the CLI tests: a tiny search config, a way to run the real command, and the docs' tested blocks of commands."""

from __future__ import annotations

import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from particle_nas.space import FACTORIZATIONS

TINY = {
    "name": "tiny",
    "seed": 3,
    "search": {"sampler": "random", "trials": 3},
    "space": {"factorization": list(FACTORIZATIONS), "wiring": ["residual", "bottleneck"], "temporal_kernel": [3], "prune_ratio": [0.0, 0.5]},
    "network": {"stem_channels": 8, "widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"clip": [4, 16, 16], "train_size": 48, "val_size": 24},
    "train": {"epochs": 1, "batch_size": 16},
}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "particle_nas", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def search_in(folder: Path, doc: dict) -> Path:
    """Run ``particle-nas search`` on config ``doc`` (written into ``folder``) and return its run directory; fails the test if it fails."""
    config = folder / f"{doc['name']}.yaml"
    config.write_text(yaml.safe_dump(doc))
    done = run_cli("search", str(config), "--no-progress", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder / doc.get("output_dir", "runs") / doc["name"]


ROOT = Path(__file__).resolve().parents[2]


def doc_commands(page: str, test_file: str) -> list[str]:
    """The commands of ``page``'s bash block marked ``<!-- tested: TEST_FILE -->`` (comments dropped)."""
    text = (ROOT / page).read_text()
    block = re.search(rf"<!-- tested: {re.escape(test_file)} -->\s*```bash\n(.*?)```", text, re.S)
    assert block, f"{page} must keep its tested block of commands ({test_file})"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def run_doc_commands(commands: list[str], monkeypatch, *, no_progress: tuple[str, ...]) -> None:
    """Run each command as written, in this process: ``python SCRIPT ...`` by runpy, ``particle-nas SUB ...`` by main (``--no-progress`` added for ``no_progress`` subcommands)."""
    from particle_nas.cli import main

    for command in commands:
        words = shlex.split(command)
        if words[0] == "python":
            monkeypatch.setattr(sys, "argv", words[1:])
            with pytest.raises(SystemExit) as done:
                runpy.run_path(words[1], run_name="__main__")
            assert done.value.code == 0, command
        else:
            assert words[0] == "particle-nas", command
            assert main(words[1:] + ["--no-progress"] * (words[1] in no_progress)) == 0, command
