"""A tiny UCF101-style data set of real encoded videos (docs/finetune.md; the fine-tuning tests use it too).

    python examples/finetune/make_ucf_demo.py demo-ucf      # needs PyAV: pip install av

Layout, as UCF101's archives unpack::

    ROOT/UCF-101/<Class>/v_<Class>_g<group>_c01.avi
    ROOT/ucfTrainTestlist/classInd.txt       "1 MoveDown" ...
    ROOT/ucfTrainTestlist/trainlist01.txt    "MoveDown/v_MoveDown_g01_c01.avi 1" ...
    ROOT/ucfTrainTestlist/testlist01.txt     "MoveDown/v_MoveDown_g04_c01.avi" ...

Each class is a bright square moving one way across a dark frame (from a
seeded start), so a network can learn the classes in a few epochs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = {"MoveDown": (0, 1), "MoveLeft": (-1, 0), "MoveRight": (1, 0)}  # (dx, dy) per class
MORE_CLASSES = {"MoveUp": (0, -1)}  # --classes 4: a second round's new class (docs/finetune.md: Two rounds)
SIZE = 16  # encoded frame size (even, as the codecs want)
FRAMES = 8


def write_video(path: Path, *, direction: tuple[int, int], start: tuple[int, int], frames: int = FRAMES, size: int = SIZE) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), 16, dtype=np.uint8)
            x = (start[0] + direction[0] * i) % (size - 4)
            y = (start[1] + direction[1] * i) % (size - 4)
            image[y : y + 4, x : x + 4] = 235
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_ucf_tree(root: Path, *, groups: int = 4, test_groups: int = 1, seed: int = 0, classes: dict[str, tuple[int, int]] | None = None) -> Path:
    """Write a UCF101-style tree under ``root`` (one video per group and class); returns ``root``."""
    classes = classes or CLASSES
    rng = np.random.default_rng(seed)
    videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for label, (cls, direction) in enumerate(sorted(classes.items()), start=1):
        (videos / cls).mkdir(parents=True, exist_ok=True)
        for g in range(1, groups + 1):
            name = f"{cls}/v_{cls}_g{g:02d}_c01.avi"
            write_video(videos / name, direction=direction, start=tuple(int(v) for v in rng.integers(0, SIZE - 4, size=2)))
            (test if g > groups - test_groups else train).append((name, label))
    (lists / "classInd.txt").write_text("".join(f"{i} {cls}\n" for i, cls in enumerate(sorted(classes), start=1)))
    (lists / "trainlist01.txt").write_text("".join(f"{name} {label}\n" for name, label in train))
    (lists / "testlist01.txt").write_text("".join(f"{name}\n" for name, _ in test))
    return root


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="write a tiny UCF101-style tree of generated videos")
    parser.add_argument("root", help="folder to write UCF-101/ and ucfTrainTestlist/ into")
    parser.add_argument("--groups", type=int, default=4, help="videos per class (the last --test-groups are the test split)")
    parser.add_argument("--test-groups", type=int, default=1, help="videos per class in the test split")
    parser.add_argument("--classes", type=int, default=3, choices=(3, 4), help="3: MoveDown, MoveLeft, MoveRight; 4: and MoveUp")
    parser.add_argument("--seed", type=int, default=0, help="seeds the squares' starting points")
    args = parser.parse_args(argv)
    classes = {**CLASSES, **MORE_CLASSES} if args.classes == 4 else CLASSES
    root = make_ucf_tree(Path(args.root), groups=args.groups, test_groups=args.test_groups, seed=args.seed, classes=classes)
    print(f"wrote {len(classes) * args.groups} videos of {len(classes)} classes under {root / 'UCF-101'}, split files in {root / 'ucfTrainTestlist'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
