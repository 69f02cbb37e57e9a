"""Videos per second decoded into a fresh video cache, with 1 and 2 decoding processes, side by side.

    python bench/video_decode.py                                  # 48 synthetic UCF101-like videos (320x240, 175 frames, MPEG-4 in AVI)
    python bench/video_decode.py --videos 96 --rounds 3 --clip 16 112 112
    python bench/video_decode.py --folder /data/ucf101/videos     # your own class-per-folder tree instead

Each round builds the cache of the same folder from scratch in a new temporary
directory, once per process count (alternating, so drifting load hits each
alike), with ``load_video_task(config, cache_dir=..., workers=N)``: listing,
the disk-space check, the lock, decoding and writing. With 2 or more
processes, the first round also starts the fork server the decoding processes
are forked from (it imports the package once per Python process); later rounds
reuse it, as a second cache built by the same process would. So the first
round and the median of the later ones are reported apart, and whether every
process count wrote the same cache (it must). Results go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_videos(root: Path, *, videos: int, frames: int, size: tuple[int, int], codec: str, ext: str, seed: int = 0) -> None:
    """``videos`` synthetic videos in two class folders: a smooth texture panning left or right, a bright square crossing it."""
    import av

    rng = np.random.default_rng(seed)
    width, height = size
    for i in range(videos):
        cls = ("left", "right")[i % 2]
        (root / cls).mkdir(parents=True, exist_ok=True)
        texture = rng.integers(0, 256, (height // 8 + 1, width // 8 + 2, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)[:height]
        step = 1 if cls == "right" else -1
        with av.open(str(root / cls / f"{cls}_{i:03d}.{ext}"), mode="w") as container:
            stream = container.add_stream(codec, rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for t in range(frames):
                image = np.roll(texture, step * t, axis=1)[:, :width].copy()
                x = (width - 16) * t // max(1, frames - 1)
                image[height // 2 - 8 : height // 2 + 8, x : x + 16] = 240
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def build_once(config, *, workers: int) -> tuple[float, str, int]:
    """Seconds to build a fresh cache of ``config`` with ``workers`` processes, the cache's sha256, the videos it decoded."""
    from particle_nas.evaluators import _video, load_video_task

    with tempfile.TemporaryDirectory() as cache:
        _video._MEMORY.clear()
        start = time.perf_counter()
        task = load_video_task(config, cache_dir=cache, progress=False, workers=workers)
        seconds = time.perf_counter() - start
        digest = hashlib.sha256()
        for path in sorted(Path(cache).glob("video-*")):
            if path.suffix != ".lock":
                digest.update(path.read_bytes())
        decoded = len(task.train) + len(task.val)
        del task
        _video._MEMORY.clear()
    return seconds, digest.hexdigest(), decoded


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", help="a class-per-folder tree of videos (default: synthetic videos made here)")
    parser.add_argument("--videos", type=int, default=96, help="synthetic videos (half per class)")
    parser.add_argument("--frames", type=int, default=175, help="frames per synthetic video (UCF101: 7 s at 25 fps on average)")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"), help="synthetic frame size")
    parser.add_argument("--codec", default="mpeg4", help="synthetic videos' codec (UCF101: MPEG-4 part 2, xvid)")
    parser.add_argument("--ext", default="avi")
    parser.add_argument("--clip", type=int, nargs=3, default=(8, 32, 32), metavar=("T", "H", "W"), help="the clip each video is decoded to")
    parser.add_argument("--processes", type=int, nargs="+", default=(1, 2), help="decoding process counts to compare")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (each builds one cache per process count)")
    parser.add_argument("--out", default="bench/video_decode/results.json", help="results JSON")
    args = parser.parse_args(argv)

    from particle_nas.evaluators import VideoFolderConfig, list_videos

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.folder) if args.folder else Path(tmp) / "videos"
        if not args.folder:
            start = time.perf_counter()
            write_videos(root, videos=args.videos, frames=args.frames, size=tuple(args.size), codec=args.codec, ext=args.ext)
            print(f"wrote {args.videos} videos ({args.size[0]}x{args.size[1]}, {args.frames} frames, {args.codec} in .{args.ext}) in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        config = VideoFolderConfig(root=str(root), clip=tuple(args.clip), val_fraction=0.25)
        videos = sum(len(side) for side in list_videos(config))
        load_before = os.getloadavg()
        runs: dict[int, list[float]] = {p: [] for p in args.processes}
        digests, decoded = set(), set()
        for _ in range(args.rounds):
            for processes in args.processes:
                seconds, digest, count = build_once(config, workers=processes)
                runs[processes].append(seconds)
                digests.add(digest)
                decoded.add(count)
        load_after = os.getloadavg()
    rows = []
    for p in args.processes:
        later = statistics.median(runs[p][1:]) if len(runs[p]) > 1 else None
        rows.append({"processes": p, "seconds": runs[p], "first_s": runs[p][0], "videos_per_s_first": videos / runs[p][0], "later_median_s": later, "videos_per_s_later": videos / later if later else None})
    result = {
        "command": "python bench/video_decode.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "python": platform.python_version(), "load_avg_before": load_before, "load_avg_after": load_after},
        "videos": videos,
        "decoded": sorted(decoded),
        "clip": list(args.clip),
        "synthetic": None if args.folder else {"frames": args.frames, "size": list(args.size), "codec": args.codec, "ext": args.ext},
        "rows": rows,
        "identical_cache": len(digests) == 1,
    }
    print(f"{videos} videos -> clips {list(args.clip)}, {args.rounds} round(s); {os.cpu_count()} CPUs; load average {' '.join(f'{x:.1f}' for x in load_before)} before, {' '.join(f'{x:.1f}' for x in load_after)} after")
    print(f"{'processes':>9} {'first s':>8} {'videos/s':>9} {'later s':>8} {'videos/s':>9}  rounds (s)")
    for row in rows:
        later = f"{row['later_median_s']:>8.2f} {row['videos_per_s_later']:>9.1f}" if row["later_median_s"] else f"{'-':>8} {'-':>9}"
        print(f"{row['processes']:>9} {row['first_s']:>8.2f} {row['videos_per_s_first']:>9.1f} {later}  {' '.join(f'{s:.2f}' for s in row['seconds'])}")
    if len(rows) > 1:
        key = "videos_per_s_later" if rows[0]["later_median_s"] else "videos_per_s_first"
        print(f"speed-up {rows[-1]['processes']} vs {rows[0]['processes']} ({'later rounds' if key.endswith('later') else 'first round'}): {rows[-1][key] / rows[0][key]:.2f}x")
    print(f"identical cache for every process count: {'yes' if result['identical_cache'] else 'NO'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
