from __future__ import annotations

import math
import pickle

import pytest
import torch

from particle_nas.evaluators import (
    SyntheticConfig,
    TrainConfig,
    TrainingDiverged,
    TrainResult,
    TrainState,
    evaluate_accuracy,
    lr_factor,
    make_synthetic_task,
    memory_format_for,
    train_proxy,
)
from particle_nas.space import ParticleSpec, SpecError, build_network


def test_train_proxy_reports_every_epoch(tiny_data, tiny_train, tiny_spec) -> None:
    task = make_synthetic_task(tiny_data)
    seen: list[tuple[int, float]] = []
    result = train_proxy(build_network(tiny_spec(), seed=0), task, config=tiny_train, on_epoch=lambda e, a: seen.append((e, a)))
    assert isinstance(result, TrainResult)
    assert [e for e, _ in seen] == [1, 2]
    assert tuple(a for _, a in seen) == result.epoch_accuracy
    assert result.accuracy == result.epoch_accuracy[-1]
    assert len(result.train_loss) == 2 and all(math.isfinite(x) for x in result.train_loss)
    assert all(0.0 <= a <= 1.0 for a in result.epoch_accuracy) and result.duration_s > 0


def test_train_proxy_is_deterministic(tiny_data, tiny_train, tiny_spec) -> None:
    task = make_synthetic_task(tiny_data)
    spec = tiny_spec().replace(dropout=0.3)  # dropout draws from the (forked, seeded) global RNG
    first = train_proxy(build_network(spec, seed=4), task, config=tiny_train)
    torch.manual_seed(12345)  # the caller's RNG state must not matter
    second = train_proxy(build_network(spec, seed=4), task, config=tiny_train)
    assert first.epoch_accuracy == second.epoch_accuracy
    assert first.train_loss == second.train_loss
    other = train_proxy(build_network(spec, seed=4), task, config=tiny_train.__class__(**{**tiny_train.__dict__, "seed": 1}))
    assert other.train_loss != first.train_loss


def test_a_train_state_continues_exactly_where_training_stopped(tiny_data, tiny_spec, tmp_path) -> None:
    """Stop after epoch 1 (through a saved and reloaded state), continue: the same weights and metrics as 3 epochs straight."""
    task = make_synthetic_task(tiny_data)
    spec = tiny_spec().replace(dropout=0.3)  # dropout draws from the RNG the state carries
    config = TrainConfig(epochs=3, batch_size=16, threads=1, optimizer="sgd")
    straight = build_network(spec, seed=2)
    whole = train_proxy(straight, task, config=config)
    first = build_network(spec, seed=2)
    states: list[TrainState] = []

    def stop(state: TrainState) -> None:
        states.append(state)
        torch.save({"model": first.state_dict(), "state": state.to_dict()}, tmp_path / "ckpt.pt")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_proxy(first, task, config=config, on_state=stop)
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    state = TrainState.from_dict(saved["state"])
    assert state.epoch == 1 and state.epoch_accuracy == states[0].epoch_accuracy
    resumed = build_network(spec, seed=7)  # other initial weights: the checkpoint's replace them
    resumed.load_state_dict(saved["model"])
    steps: list[tuple[int, int]] = []
    rest = train_proxy(resumed, task, config=config, resume=state, on_step=lambda e, s: steps.append((e, s)))
    assert rest.epoch_accuracy == whole.epoch_accuracy and rest.train_loss == whole.train_loss
    assert steps[0] == (2, 0) and len(steps) == 2 * (len(task.train) // 16)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_train_proxy_leaves_global_state_alone(tiny_data, tiny_spec) -> None:
    task = make_synthetic_task(tiny_data)
    model = build_network(tiny_spec(), seed=0)
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    train_proxy(model, task, config=TrainConfig(epochs=1, threads=1))
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), state)


def test_divergence_raises_a_clear_error(tiny_data, tiny_spec) -> None:
    task = make_synthetic_task(tiny_data)
    config = TrainConfig(epochs=2, optimizer="sgd", lr=1e30, threads=2)
    with pytest.raises(ValueError, match=r"^training diverged: loss is (nan|inf) at epoch 1 ") as info:
        train_proxy(build_network(tiny_spec(), seed=0), task, config=config)
    assert isinstance(info.value, TrainingDiverged) and info.value.epoch == 1
    copy = pickle.loads(pickle.dumps(info.value))  # e.g. raised in a worker process
    assert str(copy) == str(info.value) and copy.epoch == 1


def test_evaluate_accuracy_restores_mode(tiny_data, tiny_spec) -> None:
    model = build_network(tiny_spec(), seed=0).train()
    accuracy = evaluate_accuracy(model, make_synthetic_task(tiny_data).val, batch_size=5)
    assert model.training and 0.0 <= accuracy <= 1.0


def test_lr_schedule() -> None:
    kw = dict(total_steps=10, warmup_steps=2, schedule="cosine")
    factors = [lr_factor(s, **kw) for s in range(10)]
    assert factors[0] == pytest.approx(1 / 3) and factors[1] == pytest.approx(2 / 3) and factors[2] == 1.0
    assert all(a >= b for a, b in zip(factors[2:], factors[3:])) and factors[-1] > 0
    assert lr_factor(5, total_steps=10, warmup_steps=0, schedule="constant") == 1.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "TrainConfig.epochs must be in [1, 10000], but got 0."),
        ({"batch_size": 1}, "TrainConfig.batch_size must be in [2, 65536], but got 1."),
        ({"optimizer": "adam"}, "TrainConfig.optimizer must be one of ('sgd', 'adamw'), but got 'adam'."),
        ({"lr": 0.0}, "TrainConfig.lr must be > 0.0, but got 0.0."),
        ({"lr": float("nan")}, "TrainConfig.lr must be a finite number, but got nan."),
        ({"momentum": 1.0}, "TrainConfig.momentum must be in [0.0, 1.0), but got 1.0."),
        ({"label_smoothing": -0.1}, "TrainConfig.label_smoothing must be in [0.0, 1.0), but got -0.1."),
        ({"schedule": "step"}, "TrainConfig.schedule must be one of ('cosine', 'constant'), but got 'step'."),
        ({"epochs": 3, "warmup_epochs": 3}, "TrainConfig.warmup_epochs must be < epochs (3), but got 3.0."),
        ({"threads": 0}, "TrainConfig.threads must be in [1, 1024], but got 0."),
    ],
)
def test_config_validation(changes: dict, message: str) -> None:
    with pytest.raises(SpecError) as info:
        TrainConfig(**changes)
    assert str(info.value) == message


def test_temporal_particle_beats_spatial_only(tiny_spec) -> None:
    """Right vs left: an order-blind network is at chance, a (2+1)D one learns it in a few epochs."""
    clip = (8, 16, 16)
    task = make_synthetic_task(SyntheticConfig(num_classes=2, train_size=384, val_size=192, clip=clip, seed=0))
    config = TrainConfig(epochs=4, batch_size=16, threads=2)
    accuracy = {}
    for particle in (ParticleSpec(), ParticleSpec(factorization="spatial_only", temporal_kernel=1)):
        spec = tiny_spec(particle, num_classes=2, clip=clip).replace(widths=(8, 16))
        accuracy[particle.factorization] = train_proxy(build_network(spec, seed=0), task, config=config).accuracy
    assert accuracy["r2plus1d"] >= 0.9, accuracy
    assert accuracy["spatial_only"] <= 0.65, accuracy


def test_channels_last_3d_trains_the_same_network(tiny_data, tiny_spec) -> None:
    task = make_synthetic_task(tiny_data)
    results = {}
    for layout in ("contiguous", "channels_last_3d"):
        model = build_network(tiny_spec(), seed=0)
        results[layout] = train_proxy(model, task, config=TrainConfig(epochs=1, threads=1, memory_format=layout))
        assert all(math.isfinite(loss) for loss in results[layout].train_loss)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    # Same arithmetic in another memory order: equal up to float rounding.
    assert results["channels_last_3d"].train_loss[0] == pytest.approx(results["contiguous"].train_loss[0], rel=1e-3)
    with pytest.raises(ValueError, match=r"^TrainConfig.memory_format must be one of"):
        TrainConfig(memory_format="nhwc")


def test_auto_layout_is_channels_last_3d_on_the_cpu(tiny_data, tiny_spec) -> None:
    assert TrainConfig().memory_format == "auto"
    assert memory_format_for("auto", torch.device("cpu")) == torch.channels_last_3d
    assert memory_format_for("auto", torch.device("cuda")) == torch.contiguous_format
    assert memory_format_for("contiguous", torch.device("cpu")) == torch.contiguous_format
    shifting = build_network(tiny_spec(ParticleSpec(factorization="temporal_shift", wiring="residual")), seed=0)
    assert memory_format_for("auto", torch.device("cpu"), shifting) == torch.contiguous_format  # measured slower there
    assert memory_format_for("channels_last_3d", torch.device("cpu"), shifting) == torch.channels_last_3d
    model = build_network(tiny_spec(), seed=0)
    train_proxy(model, make_synthetic_task(tiny_data), config=TrainConfig(epochs=1, threads=1))
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)


# ---------------------------------------------------------------- precision of the epoch's loss and of validation
def test_with_fp16_an_overflowing_step_is_skipped_and_only_a_whole_non_finite_epoch_diverges() -> None:
    from particle_nas.evaluators._train import EpochLoss

    scaled = EpochLoss(torch.device("cpu"), skip_non_finite=True)  # fp16: the GradScaler skipped the step whose gradients overflowed
    for loss in (1.0, math.inf, 3.0, math.nan):
        scaled.add(torch.tensor(loss, dtype=torch.float16))
    assert (scaled.mean(), scaled.skipped) == (2.0, 2)  # the mean of the two finite steps
    overflowing = EpochLoss(torch.device("cpu"), skip_non_finite=True)
    for _ in range(3):
        overflowing.add(torch.tensor(math.inf))
    assert math.isnan(overflowing.mean()) and overflowing.skipped == 3  # no finite step: the epoch diverged
    plain = EpochLoss(torch.device("cpu"), skip_non_finite=False)  # fp32 and bf16: one non-finite step is the epoch's
    for loss in (1.0, math.inf, 3.0):
        plain.add(torch.tensor(loss))
    assert plain.mean() == math.inf and plain.skipped == 0


def test_validation_predicts_in_fp32_like_the_finetune_report(tiny_data, tiny_spec) -> None:
    """bf16 training (CPU autocast): the training forwards are autocast, every validation forward is not, so the
    reported top-1 is the one ``predict`` (the fine-tune report, an exported network) computes from the same weights."""
    from particle_nas.evaluators import predict

    task = make_synthetic_task(tiny_data)
    model = build_network(tiny_spec(), seed=0)
    casts: dict[bool, set[bool]] = {True: set(), False: set()}  # training mode -> was autocast on
    model.register_forward_hook(lambda module, inputs, output: casts[module.training].add(torch.is_autocast_enabled("cpu")))
    result = train_proxy(model, task, config=TrainConfig(epochs=1, threads=1, precision="bf16"))
    assert casts == {True: {True}, False: {False}}
    assert result.accuracy == evaluate_accuracy(model, task.val) == predict(model, task.val, num_classes=tiny_data.num_classes).top1
