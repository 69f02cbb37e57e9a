"""The evaluator seam is declared, never probed: search calls ``Evaluator``'s members; the proxy and replay evaluators write every one."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import particle_nas.search as search
from particle_nas.evaluators import Evaluator, ProxyEvaluator, ReplayEvaluator
from particle_nas.search import SearchJob, SearchSettings, run
from particle_nas.space import NetworkSpec, SearchSpace

SEARCH_DIR = Path(search.__file__).parent
MEMBERS = ("evaluate", "epochs", "device", "precision", "on_device", "warm_up", "for_clip")
PROBES = {"getattr", "hasattr", "setattr"}


def _probes(path: Path) -> list[str]:
    """Calls in ``path`` that probe an object named like an evaluator (getattr/hasattr on it) or use ``inspect``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(a.name == "inspect" for a in node.names) or isinstance(node, ast.ImportFrom) and node.module == "inspect":
            found.append(f"{path.name}:{node.lineno} imports inspect")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in PROBES and node.args:
            if "evaluator" in ast.unparse(node.args[0]).lower():
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    return found


def test_no_module_of_search_probes_an_evaluator():
    modules = sorted(SEARCH_DIR.glob("*.py"))
    assert modules
    assert [hit for path in modules for hit in _probes(path)] == []


def test_the_probe_scan_finds_a_probe(tmp_path):
    crafted = tmp_path / "probing.py"
    crafted.write_text("import inspect\n\ndef f(job):\n    return getattr(job.evaluator, 'train', None), hasattr(evaluator, 'on_device')\n")
    assert len(_probes(crafted)) == 3


@pytest.mark.parametrize(("cls", "own"), [(ProxyEvaluator, MEMBERS), (ReplayEvaluator, ("evaluate", "epochs", "for_clip"))])
def test_proxy_and_replay_implement_the_protocol(cls, own):
    """Both are Evaluators; the proxy writes every member, the replay those a table answers (it trains nothing: no device, nothing to warm up)."""
    assert issubclass(cls, Evaluator) and not inspect.isabstract(cls)
    assert set(MEMBERS) <= {name for name in dir(Evaluator) if not name.startswith("_")}  # the protocol declares each
    for name in own:
        assert name in cls.__dict__ or name in cls.__dataclass_fields__, f"{cls.__name__} leaves {name} to the default"
    assert "weights_path" in inspect.signature(cls.evaluate).parameters
    assert not hasattr(ReplayEvaluator, "train")  # no fake training recipe to satisfy a probe


def test_proxy_evaluator_answers_every_hook():
    evaluator = ProxyEvaluator()
    assert evaluator.epochs == evaluator.train.epochs and evaluator.device == evaluator.train.device and evaluator.precision == evaluator.train.precision
    assert evaluator.on_device("cpu").device == "cpu"
    assert evaluator.for_clip(evaluator.data.clip) is evaluator
    assert evaluator.for_clip((2, 16, 16)).data.clip == (2, 16, 16)


def test_replay_evaluator_answers_every_hook(tiny_bench):
    evaluator = ReplayEvaluator(table=tiny_bench[1])
    assert evaluator.epochs == evaluator.table.epochs
    assert evaluator.device is None and evaluator.precision is None  # it trains nothing: run.json records no device
    assert evaluator.on_device("cuda:1") is evaluator
    assert evaluator.for_clip(evaluator.table.network.clip) is evaluator
    assert evaluator.for_clip((99, 16, 16)) is None


def test_the_defaults_fit_an_evaluator_that_trains_nothing():
    class Fixed(Evaluator):
        def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
            return {"accuracy": 0.5, "flops": 1, "params": 1}

    fixed = Fixed()
    assert (fixed.epochs, fixed.device, fixed.precision) == (None, None, None)
    assert fixed.on_device("cuda:0") is fixed and fixed.for_clip((4, 16, 16)) is None
    fixed.warm_up()


def test_an_object_that_is_not_an_evaluator_is_refused_in_one_line(tmp_path):
    class Duck:
        def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
            raise AssertionError("never called")

    network = NetworkSpec(widths=(8,), depths=(1,), temporal_strides=(1,), spatial_strides=(1,), clip=(4, 16, 16))
    job = SearchJob(run_dir=tmp_path / "run", name="run", space=SearchSpace.from_dict({}), network=network, evaluator=Duck(), settings=SearchSettings(trials=1), seed=0, fingerprint={}, config={})
    with pytest.raises(ValueError, match=r"^job.evaluator must be a particle_nas.evaluators.Evaluator .*, but got Duck\.$"):
        run(job, progress=False)
    assert not (tmp_path / "run").exists()
