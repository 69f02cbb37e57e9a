"""Proxy accuracy of a few hand-designed particles on the synthetic task (calibration of its difficulty).

    python bench/particles.py                       # the default data and proxy budget, quickstart network
    python bench/particles.py --difficulty 0.8 --epochs 6 --particles full_residual spatial_only
    python bench/particles.py --generation --particles         # only time generating 10,000 clips of 16x64x64

Prints one line per particle: validation top-1 after each epoch, FLOPs and training time.
"""

from __future__ import annotations

import argparse
import time

import torch

from particle_nas.evaluators import ProxyEvaluator, SyntheticConfig, TrainConfig, generate_clips
from particle_nas.space import ParticleSpec

PARTICLES: dict[str, ParticleSpec] = {
    "spatial_only": ParticleSpec(factorization="spatial_only", wiring="residual", temporal_kernel=1),
    "full_residual": ParticleSpec(factorization="full", wiring="residual"),
    "r2plus1d_residual": ParticleSpec(factorization="r2plus1d", wiring="residual"),
    "csn_ip_bottleneck": ParticleSpec(factorization="csn_ip", wiring="bottleneck", expansion=1.0),
    "temporal_shift_residual": ParticleSpec(factorization="temporal_shift", wiring="residual"),
    "x3d_inverted": ParticleSpec(factorization="csn_ir", wiring="inverted", expansion=2.0, squeeze_excite=0.25, activation="silu"),
    "conv_gru_residual": ParticleSpec(factorization="conv_gru", wiring="residual", temporal_kernel=1),  # ConvNet + GRU, 1x1x1 gates
    "conv_gru_k3_residual": ParticleSpec(factorization="conv_gru", wiring="residual", temporal_kernel=3),  # 1x3x3 gates (ConvGRU)
}
# The proxy network of examples/quickstart.yaml.
NETWORK = dict(stem_channels=16, widths=(16, 32, 64), depths=(1, 1, 1), temporal_strides=(1, 1, 1), spatial_strides=(1, 2, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", nargs="*", default=list(PARTICLES), choices=list(PARTICLES))
    parser.add_argument("--difficulty", type=float, default=SyntheticConfig.difficulty)
    parser.add_argument("--num-classes", type=int, default=SyntheticConfig.num_classes)
    parser.add_argument("--train-size", type=int, default=SyntheticConfig.train_size)
    parser.add_argument("--val-size", type=int, default=SyntheticConfig.val_size)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--generation", action="store_true", help="also time generating 10,000 clips of 16x64x64")
    args = parser.parse_args()

    if args.generation:
        config = SyntheticConfig(clip=(16, 64, 64), difficulty=args.difficulty)
        start = time.perf_counter()
        clips = generate_clips(config, size=10_000, seed=0)
        print(f"generated 10,000 clips of 16x64x64 in {time.perf_counter() - start:.1f} s ({clips.clips.numel() / 2**30:.2f} GiB uint8, {torch.get_num_threads()} threads)")
    data = SyntheticConfig(num_classes=args.num_classes, train_size=args.train_size, val_size=args.val_size, difficulty=args.difficulty, seed=args.seed)
    evaluator = ProxyEvaluator(data=data, train=TrainConfig(epochs=args.epochs, seed=args.seed, threads=args.threads))
    start = time.perf_counter()
    evaluator.task()
    print(f"data: {data} (generated in {time.perf_counter() - start:.1f} s)")
    for name in args.particles:
        spec = evaluator.network_spec(particle=PARTICLES[name], **NETWORK)
        result = evaluator.evaluate(spec, seed=args.seed)
        epochs = " ".join(f"{a:.3f}" for a in result.epoch_accuracy)
        print(f"{name:24s} accuracy {result.accuracy:.3f}  epochs [{epochs}]  flops {result.flops / 1e6:.1f}M  train {result.duration_s:.1f} s", flush=True)


if __name__ == "__main__":
    main()
