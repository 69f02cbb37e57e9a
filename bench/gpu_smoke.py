"""GPU smoke test: every part of the CUDA path runs once, each check written as soon as it ends.

    python bench/gpu_smoke.py --out OUT            # on a GPU (bench/gpu_session.sh runs it first)
    python bench/gpu_smoke.py --out OUT --dry-run  # the same checks on the CPU (what CI runs)

Checks, one JSON line each in ``OUT/smoke.jsonl`` (name, ok, seconds, what was seen):

- every factorization x wiring trains a step in bf16 and in fp32;
- deterministic fp32 trains twice to bit-equal weights and losses;
- a pruned, a conv_gru, an int8 and an inception particle are evaluated (train, prune, quantize);
- every zero-cost score and latency;
- out of memory: a trial too big for a capped share of the GPU fails with TrialOutOfMemory, the
  GPU's allocated memory is back to its level, and the next (normal) trial in the same process completes.

Exits 1 when a check failed, 0 otherwise. On the CPU (``--dry-run``) everything runs at toy sizes,
bf16 as CPU autocast, and the out-of-memory check is reported as not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from particle_nas.evaluators import ZERO_COST, EvaluatorSettings, ProxyEvaluator, SyntheticConfig, TrainConfig, TrialOutOfMemory, device_clips, make_synthetic_task, train_proxy
from particle_nas.space import FACTORIZATIONS, WIRINGS, NetworkSpec, ParticleSpec, SpecError, build_network

CLIP = (4, 16, 16)
DATA = SyntheticConfig(num_classes=4, train_size=16, val_size=8, clip=CLIP, seed=0)  # one training step per epoch at batch 16


def _network(particle: ParticleSpec) -> NetworkSpec:
    return NetworkSpec(particle=particle, stem_channels=8, widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=CLIP, num_classes=DATA.num_classes)


def _particle(factorization: str, wiring: str, **fields: Any) -> ParticleSpec:
    kernel = 1 if factorization == "spatial_only" else 3
    return ParticleSpec(factorization=factorization, wiring=wiring, temporal_kernel=kernel, **fields)


def _train(device: str, **changes: Any) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 16, "warmup_epochs": 0.0, "device": device, **changes})


class Checks:
    """Runs checks one by one, appending each result to ``path`` at once (a later crash or time limit keeps it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failed = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def run(self, name: str, check: Callable[[], dict[str, Any]]) -> None:
        start = time.perf_counter()
        try:
            seen, ok = check(), True
        except Exception as err:  # recorded; the next check runs
            seen, ok = {"error": f"{type(err).__name__}: {err}".splitlines()[0][:400], "where": traceback.format_exc().strip().splitlines()[-3][:200]}, False
        ok = ok and seen.pop("ok", True)
        self.failed += not ok
        line = {"check": name, "ok": ok, "seconds": round(time.perf_counter() - start, 3), **seen}
        with self.path.open("a") as handle:
            handle.write(json.dumps(line, default=str) + "\n")
        print(f"{'ok  ' if ok else 'FAIL'} {name} ({line['seconds']} s){'' if ok else ': ' + str(seen.get('error', seen))}", flush=True)


def every_block(device: str) -> dict[str, Any]:
    """Each factorization x wiring, one training step, in bf16 and fp32: the combinations the space refuses are counted, not run."""
    task = make_synthetic_task(DATA)
    trained, refused, failed = 0, 0, []
    for factorization in FACTORIZATIONS:
        for wiring in WIRINGS:
            try:
                network = _network(_particle(factorization, wiring))
            except SpecError:
                refused += 1
                continue
            for precision in ("bf16", "fp32"):
                try:
                    result = train_proxy(build_network(network, seed=0), task, config=_train(device, precision=precision))
                    assert all(map(torch.isfinite, torch.tensor(result.train_loss))), result.train_loss
                    trained += 1
                except Exception as err:
                    failed.append(f"{factorization}/{wiring} {precision}: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
    return {"ok": not failed, "trained": trained, "refused_by_the_space": refused, "failed": failed[:10]}


def deterministic(device: str) -> dict[str, Any]:
    """fp32, deterministic: two trainings from the same weights give bit-equal weights and losses."""
    task = make_synthetic_task(DATA)
    network = _network(_particle("r2plus1d", "residual"))
    runs = []
    for _ in range(2):
        model = build_network(network, seed=0)
        result = train_proxy(model, task, config=_train(device, epochs=2, precision="fp32", deterministic=True))
        runs.append((result.train_loss, {k: v.detach().cpu() for k, v in model.state_dict().items()}))
    (loss_a, state_a), (loss_b, state_b) = runs
    equal = loss_a == loss_b and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    return {"ok": equal, "losses": [loss_a, loss_b], "weights_bit_equal": all(torch.equal(state_a[k], state_b[k]) for k in state_a)}


def particle(device: str, particle: ParticleSpec, **settings: Any) -> dict[str, Any]:
    """One particle through ProxyEvaluator (train, prune, quantize as the particle says)."""
    evaluator = ProxyEvaluator(data=DATA, train=_train(device, finetune_epochs=1), evaluators=EvaluatorSettings(**settings))
    record = evaluator.evaluate(_network(particle), seed=0).to_dict()
    return {key: record[key] for key in ("accuracy", "accuracy_before_prune", "accuracy_fp32", "device", "precision", "latency_ms", "latency_device") if key in record}


def zero_cost_and_latency(device: str) -> dict[str, Any]:
    evaluator = ProxyEvaluator(data=DATA, train=_train(device), evaluators=EvaluatorSettings(train=False, latency=True, zero_cost=tuple(ZERO_COST), zero_cost_batch=8))
    record = evaluator.evaluate(_network(_particle("csn_ip", "bottleneck")), seed=0).to_dict()
    scores = {name: record[name] for name in (*ZERO_COST, "latency_ms", "latency_batch_ms") if name in record}
    return {"ok": all(isinstance(v, float) for v in scores.values()) and set(ZERO_COST) <= set(scores), **scores, "latency_device": record.get("latency_device")}


def out_of_memory(device: str) -> dict[str, Any]:
    """A trial too big for a capped share of the GPU, then a normal one in the same process: memory back to its level."""
    if not device.startswith("cuda"):
        return {"ran": False, "why": "needs CUDA (not run on the CPU)"}
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 2 * 2**30 / total))  # 2 GiB for this process
    try:
        normal = ProxyEvaluator(data=DATA, train=_train(device))
        normal.evaluate(_network(_particle("r2plus1d", "residual")), seed=0)  # cuDNN loaded, this task's clips on the GPU
        big = ProxyEvaluator(data=SyntheticConfig(num_classes=4, train_size=64, val_size=8, clip=(16, 112, 112), seed=0), train=_train(device, batch_size=64))
        for split in ("train", "val"):  # the big task's clips stay on the GPU by design (one copy per process): part of the level
            device_clips(big.task(), split, torch.device(device))
        torch.cuda.synchronize()
        level = torch.cuda.memory_allocated()
        huge = NetworkSpec(particle=_particle("full", "plain"), stem_channels=256, widths=(512,), depths=(1,), temporal_strides=(1,), spatial_strides=(1,), clip=big.data.clip, num_classes=4)
        reason = "no error"
        try:
            big.evaluate(huge, seed=0)  # activations of about 13 GB against a 2 GiB cap
        except (TrialOutOfMemory, MemoryError, ValueError) as err:  # MemoryError/ValueError: a refusal before building, if the evaluator makes one
            from particle_nas.search._trial import fail_reason

            reason = fail_reason(err)
        torch.cuda.synchronize()
        after = torch.cuda.memory_allocated()
        record = normal.evaluate(_network(_particle("r2plus1d", "residual")), seed=0).to_dict()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    back = after <= level
    return {"ok": back and reason != "no error" and "accuracy" in record, "fail_reason": reason[:200], "allocated_before": level, "allocated_after": after, "next_trial_accuracy": record.get("accuracy")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for smoke.jsonl")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU at toy sizes")
    args = parser.parse_args(argv)
    device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not torch.cuda.is_available():
        print("bench/gpu_smoke.py: error: a CUDA GPU is needed, but torch.cuda.is_available() is False; pass --dry-run on the CPU.", file=sys.stderr)
        return 2
    checks = Checks(args.out / "smoke.jsonl")
    checks.run("every factorization x wiring, bf16 and fp32", lambda: every_block(device))
    checks.run("deterministic fp32 twice, bit-equal", lambda: deterministic(device))
    checks.run("pruned particle", lambda: particle(device, _particle("r2plus1d", "residual", prune_ratio=0.5)))
    checks.run("conv_gru particle", lambda: particle(device, _particle("conv_gru", "residual")))
    checks.run("int8 particle", lambda: particle(device, _particle("csn_ir", "residual", quantize="int8"), latency=True))
    checks.run("inception particle", lambda: particle(device, _particle("full", "inception")))
    checks.run("zero-cost scores and latency", lambda: zero_cost_and_latency(device))
    checks.run("out of memory, then a normal trial", lambda: out_of_memory(device))
    print(f"smoke: {checks.failed} check(s) failed; {checks.path}", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
