"""Inflation (I3D): a 3D network from a 2D one, equal to it on a clip of identical frames away from its ends."""

from __future__ import annotations

import pytest
import torch

from particle_nas.space import (
    FACTORIZATIONS,
    INFLATABLE,
    NOT_INFLATABLE,
    WIRINGS,
    NetworkSpec,
    ParticleSpec,
    SpecError,
    as_2d,
    build_network,
    inflate,
    inflate_state_dict,
)

FRAMES = 13  # the features' middle frame is out of reach of the zero padding at either end (reach <= 1 + 2 x 2 frames)


def _spec(factorization: str, wiring: str, **network) -> NetworkSpec:
    particle = ParticleSpec(factorization=factorization, wiring=wiring, temporal_kernel=1 if factorization == "spatial_only" else 3)
    settings = dict(particle=particle, widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), stem_channels=8, stem_kernel=(3, 3), clip=(FRAMES, 12, 12), num_classes=5)
    return NetworkSpec(**{**settings, **network})


def _trained_2d(spec: NetworkSpec, seed: int = 1) -> torch.nn.Module:
    """The 2D network with batch-norm statistics and affine parameters off their defaults, in eval mode."""
    model = build_network(as_2d(spec), seed=0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("running_mean", "bias")):
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith(("running_var", "weight")) and tensor.dim() == 1:
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    return model.eval()


def _features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.stages(model.stem(x))


def _boring(seed: int = 0) -> torch.Tensor:
    frame = torch.randn(2, 3, 1, 12, 12, generator=torch.Generator().manual_seed(seed))
    return frame.expand(-1, -1, FRAMES, -1, -1).contiguous()


@pytest.mark.parametrize("factorization", INFLATABLE)
@pytest.mark.parametrize("wiring", WIRINGS)
def test_inflated_network_gives_the_2d_output_on_identical_frames(factorization, wiring):
    spec = _spec(factorization, wiring)
    model_2d = _trained_2d(spec)
    model_3d = inflate(model_2d, spec).eval()
    assert isinstance(model_3d, torch.nn.Module) and model_3d.stem[0].kernel_size == (3, 3, 3)
    x = _boring()
    flat, inflated = _features(model_2d, x), _features(model_3d, x)
    middle = FRAMES // 2
    assert flat[:, :, middle].abs().max() > 0.1  # not a dead network
    torch.testing.assert_close(inflated[:, :, middle], flat[:, :, middle], atol=1e-4, rtol=1e-4)  # float32: a 3x3x3 sum of 27 terms rounds apart from a 3x3 one (inception: 2e-5 seen)
    # The 3D network is not the 2D one: the zero padding shows at the clip's ends, and frames of a real clip mix.
    assert not torch.allclose(inflated[:, :, 0], flat[:, :, 0], atol=1e-3)
    moving = torch.randn(2, 3, FRAMES, 12, 12, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(_features(model_3d, moving), _features(model_2d, moving), atol=1e-3)


def test_inflation_rule_on_one_conv():
    spec = _spec("full", "single", widths=(4,), depths=(1,), temporal_strides=(1,), spatial_strides=(1,), stem_channels=4)
    model_2d = _trained_2d(spec)
    state = inflate_state_dict(model_2d.state_dict(), build_network(spec, seed=5))
    w2 = model_2d.state_dict()["stages.0.0.branch.0.weight"]
    w3 = state["stages.0.0.branch.0.weight"]
    assert w2.shape == (4, 4, 1, 3, 3) and w3.shape == (4, 4, 3, 3, 3)
    assert all(torch.equal(w3[:, :, t], w2[:, :, 0] / 3) for t in range(3))
    for key in ("stem.1.running_mean", "stem.1.running_var", "stages.0.0.branch.1.weight", "head.3.weight", "head.3.bias"):
        assert torch.equal(state[key], model_2d.state_dict()[key]), key


def test_per_stage_particles_and_factorized_stems_inflate():
    particles = (ParticleSpec(factorization="p3d_b", wiring="residual"), ParticleSpec(factorization="csn_ip", wiring="bottleneck", temporal_kernel=5))
    for stem in ({"stem_mid_channels": 6}, {"stem_depthwise_temporal": True}):
        spec = _spec("full", "residual", particle=particles, **stem)
        assert as_2d(spec).stage_particles[1].temporal_kernel == 1 and as_2d(spec).stem_kernel == (1, 3)
        model_2d = _trained_2d(spec)
        x = _boring(seed=3)
        flat, inflated = _features(model_2d, x), _features(inflate(model_2d, spec).eval(), x)
        torch.testing.assert_close(inflated[:, :, FRAMES // 2], flat[:, :, FRAMES // 2], atol=1e-5, rtol=1e-5)


def test_the_same_network_is_copied():
    spec = _spec("full", "residual")
    model = build_network(spec, seed=2)
    state = inflate_state_dict(model.state_dict(), build_network(spec, seed=3))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("factorization", sorted(set(FACTORIZATIONS) - set(INFLATABLE)))
def test_factorizations_without_a_2d_form_are_refused(factorization):
    spec = _spec(factorization, "residual")
    with pytest.raises(SpecError, match=rf"NetworkSpec.particle.factorization must be one of \('full'.* \({factorization}: .*\), but got '{factorization}'") as info:
        as_2d(spec)
    assert NOT_INFLATABLE[factorization] in str(info.value)
    with pytest.raises(SpecError, match=r"NetworkSpec.particle\[1\].factorization must be one of"):
        inflate(build_network(_spec("full", "residual"), seed=0), spec.replace(particle=(ParticleSpec(factorization="full"), spec.particle)))


def test_shapes_that_cannot_be_inflated_are_named():
    spec = _spec("full", "residual")
    wider = build_network(as_2d(spec.replace(widths=(8, 24))), seed=0)
    with pytest.raises(SpecError, match=r"inflate.state_2d\['stages.1.0.branch.0.weight'\] must have the 3D layer's shape \[16, 8, 3, 3, 3\] with a temporal extent of 1 to be inflated, but got \[24, 8, 1, 3, 3\]"):
        inflate(wider, spec)
    state = build_network(as_2d(spec), seed=0).state_dict()
    del state["head.3.bias"]
    with pytest.raises(SpecError, match=r"inflate.state_2d must hold every tensor of the 3D network \(it lacks 'head.3.bias'\)"):
        inflate_state_dict(state, build_network(spec, seed=0))
    with pytest.raises(SpecError, match=r"must hold only tensors of the 3D network \(it has 'extra'\)"):
        inflate_state_dict({**build_network(as_2d(spec), seed=0).state_dict(), "extra": torch.zeros(1)}, build_network(spec, seed=0))
    with pytest.raises(TypeError, match="inflate_state_dict expects the 3D network as an nn.Module"):
        inflate_state_dict(state, spec)  # type: ignore[arg-type]
