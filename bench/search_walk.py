"""The walk of one search job through the code: from ``search.run`` to the evaluator's ``evaluate``.

    python bench/search_walk.py                  # a 1-trial search of a tiny synthetic task, in a temporary folder
    python bench/search_walk.py --json walk.json # the walk itself, module by module

Runs ``particle-nas search`` in this process under ``sys.setprofile`` and follows the innermost
frame of the package's own code (``particle_nas.*``; Optuna, torch and the standard library are left
out) from the moment ``search/_run.py:run`` is entered to the first call of an evaluator's
``evaluate``, in two ways:

- the route: the call stack when ``evaluate`` is called, as modules from ``run`` down (how many
  modules the job passes through on its way, and how many times the route comes back to a module
  it had left);
- the walk in search/: every module of search/ whose code runs on the way (the innermost search/
  frame, consecutive repeats merged): how many modules, how many steps from one to another, and
  how many of those steps come back to a module the walk was in before. The modules of space/ and
  evaluators/ it calls are left out (they answer and return), and so are leaf calls, calls that
  call no further package code (an accessor, a small helper); a third line counts them too.

The same script measured the code before and after the trial lifecycle was made one (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

TINY = {
    "name": "walk",
    "seed": 0,
    "search": {"sampler": "random", "trials": 1, "baselines": False},
    "space": {"factorization": ["r2plus1d"], "wiring": ["residual"]},
    "network": {"stem_channels": 8, "widths": [8], "depths": [1], "temporal_strides": [1], "spatial_strides": [1]},
    "data": {"num_classes": 2, "clip": [4, 8, 8], "train_size": 16, "val_size": 8},
    "train": {"epochs": 1, "batch_size": 8},
}


class Walk:
    """A profile hook: the package's calls from ``run`` to the first ``evaluate`` (frames of ``particle_nas`` only)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []  # ("call" | "return", frame number), in order
        self.frames: list[str] = []  # frame number -> its module
        self.callers: set[int] = set()  # frames that called further package code (not a leaf: an accessor, a small helper)
        self.route: list[str] = []  # the package's modules on the stack when evaluate is called
        self.started = False
        self.done = False
        self.stack: list[int] = []  # the package's frames on the call stack, innermost last

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if self.done or event not in ("call", "return"):
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("particle_nas"):
            return
        if event == "call":
            if not self.started and module == "particle_nas.search._run" and frame.f_code.co_name == "run":
                self.started = True
            if not self.started:
                return
            if self.stack:
                self.callers.add(self.stack[-1])
            self.frames.append(module)
            self.stack.append(len(self.frames) - 1)
            self.events.append(("call", self.stack[-1]))
            if frame.f_code.co_name == "evaluate" and module.startswith("particle_nas.evaluators"):
                self.done = True
                self.route = _merged([self.frames[f] for f in self.stack])
        elif self.started and self.stack:
            self.events.append(("return", self.stack.pop()))

    def search_walk(self, *, leaves: bool) -> list[str]:
        """The module of the innermost search/ frame after each call and return, consecutive repeats merged (``leaves``: count leaf calls too)."""
        stack: list[int] = []
        walk: list[str] = []
        for kind, number in self.events:
            if kind == "call":
                stack.append(number)
            elif stack:
                stack.pop()
            inner = next((f for f in reversed(stack) if self.frames[f].startswith("particle_nas.search.") and (leaves or f in self.callers)), None)
            if inner is not None:
                walk.append(self.frames[inner])
        return _merged(walk)


def _merged(modules: list[str]) -> list[str]:
    """``modules`` with consecutive repeats merged."""
    return [m for i, m in enumerate(modules) if i == 0 or modules[i - 1] != m]


def _counts(modules: list[str]) -> dict[str, Any]:
    """Distinct modules, steps between modules and returns to a module seen before (by module) of a merged sequence."""
    seen: set[str] = set()
    returns: collections.Counter[str] = collections.Counter()
    for module in modules:
        if module in seen:
            returns[module] += 1
        seen.add(module)
    return {"modules": len(seen), "steps": max(0, len(modules) - 1), "returns": sum(returns.values()), "returns_by_module": dict(returns.most_common()), "sequence": modules}


def measure(workdir: Path) -> dict[str, Any]:
    """Run the tiny search under the hook; the walk and its counts."""
    from particle_nas.cli import main

    config = workdir / "walk.yaml"
    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(workdir / "runs")}))
    walk = Walk()
    sys.setprofile(walk)
    try:
        status = main(["search", str(config), "--no-progress"])
    finally:
        sys.setprofile(None)
    if not walk.done:
        raise SystemExit(f"search_walk: the search (exit status {status}) never reached an evaluator's evaluate")
    return {"route": _counts(walk.route), "search_walk": _counts(walk.search_walk(leaves=False)), "search_walk_with_leaves": _counts(walk.search_walk(leaves=True))}


def _short(module: str) -> str:
    return module.removeprefix("particle_nas.")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the walk and its counts here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp))
    titles = {"route": "route (the stack at evaluate)", "search_walk": "walk in search/", "search_walk_with_leaves": "walk in search/ with leaf calls"}
    for key, title in titles.items():
        counts = result[key]
        print(f"{title}: {counts['modules']} modules, {counts['steps']} steps between modules, {counts['returns']} returns to a module left before")
        print("  returns by module: " + (", ".join(f"{_short(m)} {n}" for m, n in counts["returns_by_module"].items()) or "none"))
        print("  " + " > ".join(_short(m) for m in counts["sequence"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
