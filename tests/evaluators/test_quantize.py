"""Int8 post-training quantization (ONNX Runtime): every factorization x wiring, closeness, size, export and reload."""

from __future__ import annotations

import pickle

import pytest
import torch

pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install -e '.[test]')")
pytest.importorskip("onnx", reason="needs onnx (pip install -e '.[test]')")

from particle_nas.evaluators import (  # noqa: E402
    CALIBRATION_CLIPS,
    Int8Model,
    ProxyEvaluator,
    SyntheticConfig,
    TrainConfig,
    compare_int8,
    load_int8,
    make_synthetic_task,
    quantize_int8,
    quantize_network,
    save_int8,
    size_bytes,
    state_bytes,
    train_proxy,
    weight_bytes,
)
from particle_nas.space import FACTORIZATIONS, WIRINGS, ParticleSpec, SpecError, build_network  # noqa: E402

from conftest import make_tiny_spec  # noqa: E402

CLIP = (4, 8, 8)


def _clips(n: int, *, seed: int, shape: tuple[int, ...] = (3, *CLIP)) -> torch.Tensor:
    """Seeded clips in [-1, 1], as ClipSet.batch normalizes them."""
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _randomize_norms(model: torch.nn.Module, *, seed: int) -> torch.nn.Module:
    """Batch-norm statistics and affine weights as after training (fresh ones are identity maps), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(dim=1) == b.argmax(dim=1)).float().mean())


@pytest.mark.parametrize("wiring", WIRINGS)
@pytest.mark.parametrize("factorization", FACTORIZATIONS)
def test_every_factorization_and_wiring_quantizes(factorization: str, wiring: str) -> None:
    i, j = FACTORIZATIONS.index(factorization), WIRINGS.index(wiring)
    particle = ParticleSpec(
        factorization=factorization,
        wiring=wiring,
        temporal_kernel=1 if factorization == "spatial_only" else 3,
        squeeze_excite=0.25,  # SE everywhere: its pool, sigmoid and product are in every case
        activation=("relu", "silu")[(i + j) % 2],
    )
    model = _randomize_norms(build_network(make_tiny_spec(particle), seed=i * 10 + j), seed=j)
    int8 = quantize_int8(model, [_clips(8, seed=1), _clips(8, seed=2)])
    x = _clips(32, seed=3)
    with torch.no_grad():
        ref, out = model(x), int8(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    # Random networks give nearly tied logits, so these bounds are loose; the trained test below is tight.
    assert _agreement(ref, out) >= 0.8
    assert float((ref - out).abs().max()) <= 0.5 * float(ref.abs().max())
    assert 0 < weight_bytes(int8) < state_bytes(model)


@pytest.mark.parametrize(
    "network",
    [
        # C3D-like: max pools after the stem and each stage, flattened head with hidden linears
        dict(stem_pool="max1x2x2", stage_pools=("none", "max2x2x2"), head_flatten=True, head_fc=(16,), clip=(4, 16, 16)),
        # R(2+1)D stem, X3D head convs, SE every other block
        dict(stem_mid_channels=6, head_pre_channels=12, head_post_channels=16, depths=(2, 1), se_every=2),
        # X3D stem: 1 x k x k then a depthwise kt x 1 x 1
        dict(stem_depthwise_temporal=True, stem_kernel=(3, 3)),
    ],
    ids=["flatten-head", "r2plus1d-stem-x3d-head", "x3d-stem"],
)
def test_stems_pools_and_heads_quantize(network: dict) -> None:
    particle = ParticleSpec(factorization="csn_ir", wiring="inverted", squeeze_excite=0.25)
    spec = make_tiny_spec(particle).replace(**network)
    model = _randomize_norms(build_network(spec, seed=0), seed=0)
    int8 = quantize_int8(model, [_clips(8, seed=1, shape=spec.input_shape)])
    x = _clips(16, seed=2, shape=spec.input_shape)
    with torch.no_grad():
        ref, out = model(x), int8(x)
    assert out.shape == ref.shape and _agreement(ref, out) >= 0.8


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, object]:
    """A tiny temporal-shift network with SE and residual adds, trained for 3 epochs on the synthetic task."""
    data = SyntheticConfig(num_classes=4, train_size=96, val_size=64, clip=CLIP, seed=3)
    task = make_synthetic_task(data)
    spec = make_tiny_spec(ParticleSpec(factorization="temporal_shift", wiring="residual", squeeze_excite=0.25))
    model = build_network(spec, seed=0)
    train_proxy(model, task, config=TrainConfig(epochs=3, batch_size=16, threads=1))
    return model.eval(), task


def test_trained_network_keeps_its_logits_and_accuracy(trained) -> None:
    model, task = trained
    int8 = quantize_int8(model, [task.train.batch(slice(0, 32))[0], task.train.batch(slice(32, 64))[0]])
    clips, labels = task.val.batch(slice(None))
    report = compare_int8(model, int8, clips, labels, warmup=1, repeats=3)
    assert set(report) >= {"size_bytes_fp32", "size_bytes_int8", "latency_ms_fp32", "latency_ms_int8", "top1_fp32", "top1_int8", "backend"}
    assert report["backend"] == "onnxruntime"
    assert report["top1_agreement"] >= 0.9
    assert abs(report["top1_int8"] - report["top1_fp32"]) <= 0.1
    with torch.no_grad():
        scale = float(model(clips).abs().max())
    assert report["max_abs_logit_diff"] <= 0.1 * scale
    assert all(report[k] > 0 for k in ("latency_ms_fp32", "latency_ms_int8", "latency_ms_fp32_onnxruntime"))


def test_int8_file_is_smaller_and_reloads_to_the_same_outputs(tmp_path) -> None:
    spec = make_tiny_spec(ParticleSpec(factorization="full", wiring="residual")).replace(widths=(16, 32), stem_channels=16)
    model = _randomize_norms(build_network(spec, seed=0), seed=0)
    int8 = quantize_int8(model, [_clips(8, seed=1)])
    path = save_int8(int8, tmp_path / "net" / "int8.onnx")
    report = compare_int8(model, int8, _clips(4, seed=2), torch.zeros(4, dtype=torch.int64), warmup=0, repeats=1)
    assert path.stat().st_size == report["size_bytes_int8"] < report["size_bytes_fp32"]
    assert weight_bytes(int8) < state_bytes(model) / 3  # int8 weights: about a quarter of float32
    assert report["weight_bytes_int8"] == weight_bytes(int8) < report["weight_bytes_fp32"] / 3 < report["size_bytes_fp32"] / 3
    reloaded = load_int8(path)
    x = _clips(5, seed=4)
    with torch.no_grad():
        assert torch.equal(reloaded(x), int8(x))
        copied = pickle.loads(pickle.dumps(int8))  # the session is rebuilt from the bytes (worker processes pickle results)
        assert torch.equal(copied(x), int8(x))


def test_size_bytes_counts_float32_state_and_int8_tensors() -> None:
    model = build_network(make_tiny_spec(), seed=0)
    state = model.state_dict()
    assert size_bytes(model) == state_bytes(model) == sum(t.numel() * t.element_size() for t in state.values())
    params = sum(p.numel() for p in model.parameters())
    assert state_bytes(model) >= 4 * params
    int8 = quantize_int8(model, [_clips(4, seed=0)])
    assert size_bytes(int8) == weight_bytes(int8) and isinstance(int8, Int8Model)


def test_keep_float_leaves_a_stage_in_float32() -> None:
    model = _randomize_norms(build_network(make_tiny_spec(), seed=0), seed=0)
    calibration = [_clips(8, seed=1)]
    every = quantize_int8(model, calibration)
    partial = quantize_int8(model, calibration, keep_float=["stages.1"])
    assert weight_bytes(every) < weight_bytes(partial)  # stage 1's weights stay float32
    with pytest.raises(SpecError, match=r"^quantize_int8.keep_float must name submodules of the model, but got 'stages.7'"):
        quantize_int8(model, calibration, keep_float=["stages.7"])


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ([], r"^calibration must hold at least one batch"),
        ([torch.zeros(2, 3, 8, 8)], r"^calibration\[0\] must be a float tensor of clips \(N, C, T, H, W\), but got \(2, 3, 8, 8\)"),
        ([_clips(2, seed=0), _clips(2, seed=0, shape=(3, 4, 16, 16))], r"^calibration\[1\] must have the clip shape of calibration\[0\]"),
    ],
)
def test_bad_calibration_is_one_clear_error(calibration, message) -> None:
    with pytest.raises(ValueError, match=message):
        quantize_int8(build_network(make_tiny_spec(), seed=0), calibration)


def test_bad_backend_and_missing_file(tmp_path) -> None:
    with pytest.raises(SpecError, match=r"^quantize_int8.backend must be one of \('onnxruntime',\), but got 'tflite'"):
        quantize_int8(build_network(make_tiny_spec(), seed=0), [_clips(2, seed=0)], backend="tflite")
    with pytest.raises(ValueError, match=r"^path must be an int8 ONNX file written by save_int8"):
        load_int8(tmp_path / "missing.onnx")


# ---------------------------------------------------------------- in the evaluator
def test_evaluator_reports_int8_accuracy_and_size(tiny_data: SyntheticConfig) -> None:
    evaluator = ProxyEvaluator(data=tiny_data, train=TrainConfig(epochs=1, batch_size=16, threads=1))
    spec = make_tiny_spec(ParticleSpec(factorization="csn_ip", wiring="bottleneck"))
    fp32 = evaluator.evaluate(spec, seed=0).to_dict()
    int8 = evaluator.evaluate(spec.replace(particle=spec.particle.replace(quantize="int8")), seed=0).to_dict()
    assert "accuracy_fp32" not in fp32 and fp32["size_bytes"] == state_bytes(build_network(spec, seed=0))
    assert int8["accuracy_fp32"] == fp32["accuracy"]  # the same float network was trained, then quantized
    assert 0.0 <= int8["accuracy"] <= 1.0 and abs(int8["accuracy"] - int8["accuracy_fp32"]) <= 0.25
    assert 0 < int8["size_bytes"] < fp32["size_bytes"]
    assert (int8["flops"], int8["params"]) == (fp32["flops"], fp32["params"])


def test_per_stage_quantization_keeps_float_stages(tiny_data: SyntheticConfig) -> None:
    task = make_synthetic_task(tiny_data)
    int8, none = ParticleSpec(quantize="int8"), ParticleSpec()
    spec = make_tiny_spec(int8)
    model = _randomize_norms(build_network(spec, seed=0), seed=0)
    assert quantize_network(model, spec.replace(particle=none), task, seed=0) is model
    every = quantize_network(model, spec, task, seed=0)
    mixed = quantize_network(model, spec.replace(particle=(int8, none)), task, seed=0)
    assert weight_bytes(every) < weight_bytes(mixed) < state_bytes(model)
    assert CALIBRATION_CLIPS > 0


def test_latency_of_an_int8_particle_is_measured_on_the_int8_network(tiny_data: SyntheticConfig, tiny_train: TrainConfig, monkeypatch) -> None:
    from particle_nas.evaluators import EvaluatorSettings, Latency

    timed: list[type] = []
    measure = Latency.measure
    monkeypatch.setattr(Latency, "measure", lambda self, model, batch: timed.append(type(model)) or measure(self, model, batch))
    evaluator = ProxyEvaluator(data=tiny_data, train=tiny_train, evaluators=EvaluatorSettings(train=False, latency=True, latency_warmup=0, latency_repeats=2))
    result = evaluator.evaluate(make_tiny_spec(ParticleSpec(quantize="int8")), seed=0).to_dict()
    assert result["latency_ms"] > 0 and result["size_bytes"] > 0 and "accuracy" not in result
    assert timed[-1] is Int8Model  # the float network is timed first, then the int8 one replaces its figure
