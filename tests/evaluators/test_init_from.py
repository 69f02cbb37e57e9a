"""train.init_from: training starts from a 2D network's weights, inflated by I3D's rule."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from particle_nas.evaluators import ProxyEvaluator, SyntheticConfig, TrainConfig, load_weights, save_weights
from particle_nas.space import ParticleSpec, SpecError, as_2d, build_network, inflate_state_dict


@pytest.fixture
def spec_3d(tiny_spec):
    return tiny_spec(ParticleSpec(factorization="full", wiring="residual", temporal_kernel=3))


def test_initial_network_holds_the_inflated_file(tmp_path, tiny_data: SyntheticConfig, tiny_train: TrainConfig, spec_3d) -> None:
    path = save_weights(build_network(as_2d(spec_3d), seed=7), tmp_path / "flat.safetensors")
    evaluator = ProxyEvaluator(data=tiny_data, train=dataclasses.replace(tiny_train, init_from=str(path)))
    model = evaluator.initial_network(spec_3d, seed=0)
    expected = inflate_state_dict(load_weights(path), build_network(spec_3d, seed=0))
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    fresh = ProxyEvaluator(data=tiny_data, train=tiny_train).initial_network(spec_3d, seed=0)
    assert all(torch.equal(v, w) for v, w in zip(fresh.state_dict().values(), build_network(spec_3d, seed=0).state_dict().values()))
    assert not torch.equal(fresh.state_dict()["stem.0.weight"], model.state_dict()["stem.0.weight"])


def test_a_2d_evaluation_seeds_a_3d_one(tmp_path, tiny_data: SyntheticConfig, tiny_train: TrainConfig, spec_3d) -> None:
    """The chain a progressive step or a fine-tune runs: train the 2D network and save it, then train the 3D one from it."""
    flat = tmp_path / "flat.safetensors"
    ProxyEvaluator(data=tiny_data, train=tiny_train).evaluate(as_2d(spec_3d), seed=0, weights_path=flat)
    inflated = ProxyEvaluator(data=tiny_data, train=dataclasses.replace(tiny_train, init_from=str(flat))).evaluate(spec_3d, seed=0)
    fresh = ProxyEvaluator(data=tiny_data, train=tiny_train).evaluate(spec_3d, seed=0)
    assert inflated.train_loss != fresh.train_loss  # same seed, same batches: only the start differs
    assert (inflated.flops, inflated.params) == (fresh.flops, fresh.params)
    pruned = spec_3d.replace(particle=spec_3d.particle.replace(prune_ratio=0.5))  # the unpruned network starts from the file
    result = ProxyEvaluator(data=tiny_data, train=dataclasses.replace(tiny_train, init_from=str(flat), finetune_epochs=0)).evaluate(pruned, seed=0)
    assert result.accuracy_before_prune == inflated.accuracy


def test_init_from_is_checked(tmp_path, tiny_data: SyntheticConfig, tiny_train: TrainConfig, spec_3d) -> None:
    with pytest.raises(SpecError, match=r"^TrainConfig.init_from must name an existing .safetensors file \(the trained 2D network's weights\), but got 'missing.safetensors'.$"):
        TrainConfig(init_from="missing.safetensors")
    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(SpecError, match="TrainConfig.init_from must name an existing .safetensors file"):
        TrainConfig(init_from=str(tmp_path / "w.pt"))
    other = save_weights(build_network(as_2d(spec_3d.replace(widths=(8, 16))), seed=0), tmp_path / "other.safetensors")
    evaluator = ProxyEvaluator(data=tiny_data, train=dataclasses.replace(tiny_train, init_from=other))
    assert evaluator.train.init_from == str(other)
    with pytest.raises(SpecError, match=r"^TrainConfig.init_from must hold the weights of the network or of its 2D form, space.as_2d \(inflate.state_2d\['stages.1.0.branch.0.weight'\] must have"):
        evaluator.evaluate(spec_3d, seed=0)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(SpecError, match=r"^TrainConfig.init_from must be a safetensors file of a network's state_dict"):
        ProxyEvaluator(data=tiny_data, train=dataclasses.replace(tiny_train, init_from=str(broken))).initial_network(spec_3d, seed=0)
