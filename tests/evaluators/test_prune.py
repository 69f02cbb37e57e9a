"""Structured pruning: torch-pruning physically removes inner channels, down to the analytic model's network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from particle_nas.evaluators import ProxyEvaluator, SyntheticConfig, TrainConfig, count_cost, prune_network, prunes, unpruned_spec
from particle_nas.space import FACTORIZATIONS, WIRINGS, NetworkSpec, ParticleSpec, build_network, cost, effective_prune_ratio, pruned_width

CLIP = (4, 16, 16)

# Every wiring with every factorization; r2plus1d three times (mid rule "conv", torchvision's "block", S3D's "out").
CASES = [(w, f, "conv") for w in WIRINGS for f in FACTORIZATIONS] + [(w, "r2plus1d", mid) for w in WIRINGS for mid in ("block", "out")]


def _spec(wiring: str, factorization: str, *, mid: str = "conv", prune_ratio: float = 0.5, expansion: float | None = None) -> NetworkSpec:
    particle = ParticleSpec(
        expansion=expansion,
        factorization=factorization,
        wiring=wiring,
        temporal_kernel=1 if factorization == "spatial_only" else 3,
        squeeze_excite=0.25 if wiring in ("bottleneck", "inverted") else 0.0,
        r2plus1d_mid=mid,
        prune_ratio=prune_ratio,
    )
    return NetworkSpec(
        particle=particle,
        widths=(8, 16),
        depths=(2, 1),
        temporal_strides=(1, 2),
        spatial_strides=(1, 2),
        stem_channels=8,
        clip=CLIP,
        num_classes=5,
    )


def _randomize(model: nn.Module, seed: int) -> None:
    """Distinct weights and batch-norm statistics, so L1 ranking and the pruned forward are not trivial."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + (0.5 if "running_var" in name else -0.5))


@pytest.mark.parametrize(("wiring", "factorization", "mid"), CASES)
def test_pruning_removes_channels_down_to_the_analytic_network(wiring: str, factorization: str, mid: str) -> None:
    spec = _spec(wiring, factorization, mid=mid)
    dense_spec = unpruned_spec(spec)
    dense = build_network(dense_spec, seed=0)
    _randomize(dense, seed=1)
    before = {k: v.clone() for k, v in dense.state_dict().items()}

    pruned = prune_network(dense, spec)

    after = pruned.state_dict()
    built = build_network(spec, seed=0).state_dict()
    assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in built.items()}
    assert set(after) == set(before)
    smaller = [k for k in after if after[k].numel() < before[k].numel()]
    if effective_prune_ratio(spec.particle) == 0:  # channel-wise convs tie every inner channel to the output
        assert not smaller
        assert cost(spec) == cost(dense_spec)
    else:
        inner = [k for k in smaller if k.endswith(".weight") and after[k].dim() == 5]
        assert inner and all(k.startswith("stages.") for k in smaller)
        assert cost(spec).params < cost(dense_spec).params
    for k in after:  # stem, head and residual stream untouched
        if not k.startswith("stages.") or ".shortcut." in k:
            assert torch.equal(after[k], before[k]), k
    measured = count_cost(pruned, input_shape=spec.input_shape)
    assert (measured.params, measured.flops) == (cost(spec).params, cost(spec).flops)
    assert pruned(torch.randn(2, *spec.input_shape)).shape == (2, 5)


def _first_inner(block: nn.Module, wiring: str) -> tuple[nn.Conv3d, nn.BatchNorm3d]:
    """The block's first conv whose outputs are inner channels, and its batch norm: the first conv of the branch, or in an
    inception block the reduce conv of its first conv tower (branch 1 of the concatenation)."""
    layers = block.branch[0].branches[1] if wiring == "inception" else block.branch
    return layers[0], layers[1]


@pytest.mark.parametrize("wiring", [w for w in WIRINGS if w != "single"])  # a single conv has no inner channels
def test_pruning_removes_the_channels_of_lowest_l1(wiring: str) -> None:
    spec = _spec(wiring, "full", expansion=1.0 if wiring == "bottleneck" else None)
    dense = build_network(unpruned_spec(spec), seed=0)
    _randomize(dense, seed=2)
    source, norm = _first_inner(dense.stages[0][0], wiring)
    kept = source.weight.detach().clone()
    weak = min(3, kept.shape[0] - 1)
    with torch.no_grad():
        kept[weak].zero_()
        source.weight.copy_(kept)
        norm.weight[weak] = 0.0  # its batch norm too
        norm.bias[weak] = 0.0

    pruned = prune_network(dense, spec)

    survivors = _first_inner(pruned.stages[0][0], wiring)[0].weight
    assert survivors.shape[0] == pruned_width(kept.shape[0], prune_ratio=0.5) < kept.shape[0]
    rows = [[i for i in range(kept.shape[0]) if torch.equal(kept[i], row)] for row in survivors]
    assert all(len(r) == 1 for r in rows)  # every surviving channel is an original one, unchanged
    rows = [r[0] for r in rows]
    assert weak not in rows
    assert rows == sorted(rows)  # in their original order


def test_unpruned_spec_and_prunes() -> None:
    spec = _spec("residual", "full")
    assert prunes(spec) and not prunes(unpruned_spec(spec))
    assert unpruned_spec(spec).particle.prune_ratio == 0.0
    per_stage = spec.replace(particle=(spec.particle, spec.particle.replace(prune_ratio=0.25)))
    assert all(p.prune_ratio == 0.0 for p in unpruned_spec(per_stage).stage_particles)
    assert not prunes(_spec("residual", "csn_ir"))  # nothing can be removed there


def test_prune_network_refuses_a_network_of_another_layout() -> None:
    with pytest.raises(ValueError, match="prune_network.model"):
        prune_network(build_network(_spec("bottleneck", "csn_ip", prune_ratio=0.0), seed=0), _spec("residual", "full"))


def test_evaluation_records_accuracy_before_and_after_pruning() -> None:
    data = SyntheticConfig(num_classes=4, train_size=64, val_size=32, clip=(4, 8, 8), seed=3)
    evaluator = ProxyEvaluator(data=data, train=TrainConfig(epochs=2, batch_size=16, threads=2, finetune_epochs=1))
    spec = evaluator.network_spec(particle=ParticleSpec(factorization="full", wiring="residual", prune_ratio=0.5), widths=(8, 8), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), stem_channels=8)
    pruned = evaluator.evaluate(spec, seed=0)
    assert pruned.accuracy_before_prune is not None and 0.0 <= pruned.accuracy_before_prune <= 1.0
    assert len(pruned.epoch_accuracy) == 3 and pruned.accuracy == pruned.epoch_accuracy[-1]
    assert (pruned.flops, pruned.params) == (cost(spec).flops, cost(spec).params)
    dense = evaluator.evaluate(unpruned_spec(spec), seed=0)
    assert dense.accuracy_before_prune is None and len(dense.epoch_accuracy) == 2
    assert pruned.accuracy_before_prune == dense.accuracy  # the same network, trained the same way, before pruning
    assert pruned.flops < dense.flops
    assert pruned.to_dict()["accuracy_before_prune"] == pruned.accuracy_before_prune
    no_finetune = ProxyEvaluator(data=data, train=TrainConfig(epochs=2, batch_size=16, threads=2, finetune_epochs=0)).evaluate(spec, seed=0)
    assert len(no_finetune.epoch_accuracy) == 2 and no_finetune.accuracy_before_prune == pruned.accuracy_before_prune


def test_finetune_epochs_is_validated() -> None:
    with pytest.raises(ValueError, match="TrainConfig.finetune_epochs"):
        TrainConfig(finetune_epochs=-1)


@pytest.mark.parametrize("wiring", ["residual", "bottleneck", "inverted"])
def test_conv_gru_loses_a_hidden_channel_from_every_gate_at_once(wiring: str) -> None:
    """A hidden channel of the GRU is one channel of all six gate convs (and of the recurrent inputs, and of the next layer)."""
    from particle_nas.space import ConvGRU

    spec = _spec(wiring, "conv_gru")
    dense = build_network(unpruned_spec(spec), seed=0)
    _randomize(dense, seed=4)

    def parts(model: nn.Module) -> tuple[nn.Sequential, nn.Module]:
        branch = model.stages[0][0].branch
        i = next(i for i, m in enumerate(branch) if isinstance(m, nn.Sequential) and isinstance(m[-1], ConvGRU))
        return branch[i], branch[i + 1]  # (2D conv -> BN -> act -> GRU), and the batch norm after it

    (conv, after_norm) = parts(dense)
    before = {"spatial_norm": conv[1].weight.detach().clone(), "next_norm": after_norm.weight.detach().clone()}
    before.update({name: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone()) for name, m in conv[3].named_children()})
    (conv, after_norm) = parts(prune_network(dense, spec))
    gru = conv[3]

    def kept(new: torch.Tensor, old: torch.Tensor) -> list[int]:
        return [next(i for i in range(len(old)) if old[i] == v) for v in new]

    hidden = kept(gru.update_x.bias, before["update_x"][1])
    inputs = kept(conv[1].weight, before["spatial_norm"])
    assert len(hidden) < len(before["update_x"][1]) and hidden == sorted(hidden)
    depthwise = wiring == "inverted"
    for name, m in gru.named_children():
        weight, bias = before[name]
        columns = slice(None) if depthwise else (hidden if name.endswith("_h") else inputs)
        assert torch.equal(m.weight, weight[hidden][:, columns]), name
        if bias is not None:
            assert torch.equal(m.bias, bias[hidden]), name
    assert torch.equal(after_norm.weight, before["next_norm"][hidden])
