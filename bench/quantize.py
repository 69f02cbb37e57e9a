"""Float32 vs int8 (ONNX Runtime post-training quantization) of trained proxy networks: size, CPU latency, top-1.

    python bench/quantize.py                                  # three particles in the quickstart network, 3 epochs
    python bench/quantize.py --particles full/residual --epochs 1 --train-size 64 --val-size 32   # a quick look

Each particle is stacked into the quickstart's proxy network, trained on the
synthetic task (``--epochs``), quantized with ``quantize_int8`` calibrated on
``CALIBRATION_CLIPS`` training clips (as the search does), and compared with
``compare_int8`` on the validation clips: ONNX file sizes, median batch-1
latency (PyTorch float32, ONNX Runtime float32 and int8) with ``--threads``
threads, top-1 of both and their agreement. Prints one markdown table.
"""

from __future__ import annotations

import argparse

import torch

from particle_nas.evaluators import CALIBRATION_CLIPS, SyntheticConfig, TrainConfig, compare_int8, make_synthetic_task, quantize_int8, train_proxy
from particle_nas.space import NetworkSpec, ParticleSpec, build_network

NETWORK = dict(stem_channels=16, widths=(16, 32, 64), depths=(1, 1, 1), temporal_strides=(1, 1, 1), spatial_strides=(1, 2, 2))
PARTICLES = ("r2plus1d/residual", "csn_ir/bottleneck", "temporal_shift/inverted")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", nargs="+", default=list(PARTICLES), help="factorization/wiring pairs")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--val-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30, help="timed batch-1 passes (after 5 untimed)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = SyntheticConfig(num_classes=8, clip=(8, 32, 32), train_size=args.train_size, val_size=args.val_size, seed=0)
    task = make_synthetic_task(data)
    clips, labels = task.val.batch(slice(None))
    calibration = [task.train.batch(slice(i, i + 16))[0] for i in range(0, min(CALIBRATION_CLIPS, len(task.train)), 16)]
    rows = []
    print("| particle | params | ONNX fp32 / int8 (bytes) | latency ms: PyTorch fp32 / ORT fp32 / ORT int8 | top-1 fp32 / int8 | agreement |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.particles:
        factorization, wiring = name.split("/")
        spec = NetworkSpec(particle=ParticleSpec(factorization=factorization, wiring=wiring), clip=data.clip, num_classes=data.num_classes, **NETWORK)
        model = build_network(spec, seed=0)
        train_proxy(model, task, config=TrainConfig(epochs=args.epochs, threads=args.threads))
        model.eval()
        int8 = quantize_int8(model, calibration, threads=args.threads)
        r = compare_int8(model, int8, clips, labels, warmup=5, repeats=args.repeats)
        params = sum(p.numel() for p in model.parameters())
        print(
            f"| {name} | {params:,} | {r['size_bytes_fp32']:,} / {r['size_bytes_int8']:,} | "
            f"{r['latency_ms_fp32']:.2f} / {r['latency_ms_fp32_onnxruntime']:.2f} / {r['latency_ms_int8']:.2f} | "
            f"{r['top1_fp32']:.3f} / {r['top1_int8']:.3f} | {r['top1_agreement']:.3f} |",
            flush=True,
        )
        rows.append({"particle": name, "params": params, **r})
    return rows


if __name__ == "__main__":
    main()
