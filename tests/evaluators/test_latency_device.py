"""latency_device names where latency_ms was timed: an int8 network runs in ONNX Runtime on the CPU, whatever device trained it."""

from __future__ import annotations

import pytest

from particle_nas.evaluators import EvaluatorSettings, ProxyEvaluator, make_synthetic_task
from particle_nas.space import ParticleSpec, build_network

pytest.importorskip("onnxruntime", reason="int8 networks need onnxruntime (pip install onnx onnxruntime)")


@pytest.mark.parametrize("quantize", ["int8", "none"])
def test_an_int8_networks_latency_is_labelled_cpu(tiny_data, tiny_train, tiny_spec, quantize: str) -> None:
    evaluator = ProxyEvaluator(data=tiny_data, train=tiny_train, evaluators=EvaluatorSettings(latency=True, latency_warmup=0, latency_repeats=1))
    spec = tiny_spec(ParticleSpec(quantize=quantize))
    gpu = "cuda:0 (NVIDIA H100 80GB HBM3)"  # what a float network trained and timed on a GPU records
    metrics, where = {"latency_ms": 0.5, "latency_batch_ms": 0.9}, {"device": gpu, "precision": "bf16", "latency_device": gpu}
    evaluator.quantize(build_network(spec, seed=0), spec, make_synthetic_task(tiny_data), seed=0, metrics=metrics, where=where)
    if quantize == "int8":
        assert where["latency_device"] == "cpu" and "latency_batch_ms" not in metrics and metrics["latency_ms"] != 0.5
    else:
        assert where["latency_device"] == gpu and metrics["latency_batch_ms"] == 0.9 and metrics["latency_ms"] == 0.5
    assert where["device"] == gpu  # training stays labelled where it ran
