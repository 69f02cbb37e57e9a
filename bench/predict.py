"""``particle-nas predict`` throughput: torch vs ONNX vs int8 ONNX, on generated videos, in videos/s and clips/s.

    python bench/predict.py                               # quickstart network and the README's bigger one, 2 threads
    python bench/predict.py --networks quickstart --videos 24 --views 1 3

Two networks of one particle (``--particle``, default csn_ir/bottleneck):
``quickstart`` (examples/quickstart.yaml's proxy network: widths 16-32-64,
clip 8x32x32, 8 classes) and ``bigger`` (the README's: widths 64-128-256-512,
depths 2, clip 16x112x112, 400 classes). Each is written as a fine-tune
output (report.json, best.safetensors from its seeded weights, and
model-int8.onnx calibrated on random clips: throughput does not depend on
what the weights learned), then ``Predictor.load(folder, runtime=...)``
predicts ``--videos`` generated videos (PyAV mpeg4, ``--frames`` frames at
``--size`` pixels; decoding and resizing included, as the command does it)
with ``--threads`` threads, after one untimed video. Prints one markdown
table with the machine, the threads and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "finetune"))

from make_ucf_demo import write_video  # noqa: E402

from particle_nas.evaluators import quantize_int8, save_int8  # noqa: E402
from particle_nas.results import Predictor, PredictSettings  # noqa: E402
from particle_nas.space import NetworkSpec, ParticleSpec, build_network, cost  # noqa: E402

NETWORKS = {
    "quickstart": dict(stem_channels=16, widths=(16, 32, 64), depths=(1, 1, 1), temporal_strides=(1, 1, 1), spatial_strides=(1, 2, 2), clip=(8, 32, 32), num_classes=8),
    "bigger": dict(stem_channels=16, widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), temporal_strides=(1, 2, 2, 2), spatial_strides=(1, 2, 2, 2), clip=(16, 112, 112), num_classes=400),
}


def fine_tune_folder(folder: Path, network: NetworkSpec, *, threads: int) -> None:
    model = build_network(network, seed=0).eval()
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "best.safetensors"))
    names = [f"class{i}" for i in range(network.num_classes)]
    (folder / "report.json").write_text(json.dumps({"network": network.to_dict(), "class_names": names, "settings": {"mode": "full"}}))
    calibration = [torch.rand(2, *network.input_shape) * 2 - 1 for _ in range(2)]
    save_int8(quantize_int8(model, calibration, threads=threads), folder / "model-int8.onnx")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--particle", default="csn_ir/bottleneck", help="factorization/wiring")
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnx", "int8"])
    parser.add_argument("--videos", type=int, default=16, help="timed videos per setting")
    parser.add_argument("--views", type=int, nargs="+", default=[1], help="temporal views per video (each a row)")
    parser.add_argument("--crops", type=int, default=1, choices=(1, 3))
    parser.add_argument("--frames", type=int, default=48, help="frames per generated video")
    parser.add_argument("--size", type=int, default=128, help="pixels of the generated videos (square)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    factorization, wiring = args.particle.split("/")
    rows = []
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; threads {args.threads}; torch {torch.__version__}; load average before: {load()}")
    print("| network | GFLOPs/clip | runtime | views x crops | videos/s | clips/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        videos = []
        for i in range(args.videos + 1):
            path = Path(tmp) / f"v{i:03d}.avi"
            write_video(path, direction=(1, i % 3 - 1), start=(i % 7, i % 5), frames=args.frames, size=args.size)
            videos.append(path)
        for name in args.networks:
            network = NetworkSpec(particle=ParticleSpec(factorization=factorization, wiring=wiring), **NETWORKS[name])
            folder = Path(tmp) / name
            fine_tune_folder(folder, network, threads=args.threads)
            for runtime in args.runtimes:
                for views in args.views:
                    predictor = Predictor.load(folder, runtime=runtime, settings=PredictSettings(views=views, crops=args.crops, threads=args.threads))
                    predictor.predict_video(videos[0])  # untimed: sessions, first-call allocations
                    run = predictor.predict_videos(videos[1:])
                    row = {"network": name, "gflops": cost(network).flops / 1e9, "runtime": runtime, "views": views, "crops": args.crops, "videos_per_s": run.videos_per_s, "clips_per_s": run.clips_per_s}
                    rows.append(row)
                    print(f"| {name} | {row['gflops']:.3f} | {runtime} | {views} x {args.crops} | {run.videos_per_s:.2f} | {run.clips_per_s:.2f} |", flush=True)
    print(f"load average after: {load()}")
    return rows


if __name__ == "__main__":
    main()
