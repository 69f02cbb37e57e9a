"""Applying a trained network to new videos: ``Predictor`` (load once, predict per video, per clip window, per frame stream).

What it loads (``Predictor.load``):

- a fine-tune output (``runs/NAME/finetune``, or ``runs/NAME``): the network and
  class names of its ``report.json``, the best epoch's ``best.safetensors``;
  runtime ``torch`` (those weights), ``onnx`` (the same network exported to ONNX
  when loaded) or ``int8`` (its ``model-int8.onnx``, from ``finetune --quantize int8``);
- an exported file (``particle-nas export --format onnx|torchscript --weights``):
  ``X.onnx`` (its input shape from the graph), ``X.pt`` or ``X.safetensors``
  (the network from ``X.yaml`` beside it). Class names from ``classes``
  (a ``classInd.txt`` or one name per line), else ``class0``, ``class1``, ...

A video is ``views`` clips of T frames spread over it x ``crops`` spatial crops
(``evaluators.decode_views``), all run as one batch; its class probabilities
are the mean of the clips' softmax, as X3D and SlowFast average their views.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from particle_nas.evaluators import BEST_WEIGHTS as BEST
from particle_nas.evaluators import INT8_MODEL as INT8
from particle_nas.evaluators import VIEW_CROPS, decode_views, normalize, videos_under
from particle_nas.space import NetworkSpec, SpecError, check_int

from ._files import atomic_write
from ._finetune_report import REPORT_JSON as REPORT  # what finetune writes beside its weights

RUNTIMES: tuple[str, ...] = ("torch", "onnx", "int8")
LIST_SUFFIXES: tuple[str, ...] = (".txt", ".lst", ".list")  # --videos FILE with these suffixes lists videos, one per line
ONNX_HINT = 'the onnx and int8 runtimes need onnx and onnxruntime, which are not installed: pip install -e ".[export]"'


@dataclass(frozen=True)
class PredictSettings:
    """How each video is sampled and what is returned."""

    views: int = 1  # temporal clips per video, uniformly spaced (decode_views)
    crops: int = 1  # spatial crops per clip: 1 (the whole frame) or 3 (start, centre, end of the longer side)
    top_k: int = 5  # labels returned per video (at most the number of classes)
    min_frames: int = 1  # a video with fewer frames is skipped as too short
    threads: int | None = None  # torch / ONNX Runtime intra-op threads; None = torch's current number

    def __post_init__(self) -> None:
        p = "PredictSettings."
        check_int(p + "views", self.views, low=1, high=1024)
        if self.crops not in VIEW_CROPS:
            raise SpecError(p + "crops", f"must be one of {VIEW_CROPS}", self.crops)
        check_int(p + "top_k", self.top_k, low=1)
        check_int(p + "min_frames", self.min_frames, low=1)
        if self.threads is not None:
            check_int(p + "threads", self.threads, low=1, high=1024)

    @property
    def clips(self) -> int:
        """Clips per video: views x crops."""
        return self.views * self.crops


@dataclass(frozen=True)
class VideoPrediction:
    """The top-k labels of one video (or clip window), best first, with their mean probabilities."""

    video: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    clips: int  # clips averaged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PredictionRun:
    """What ``Predictor.predict_videos`` did: the predictions, the skipped videos with their reasons, its wall time."""

    predictions: tuple[VideoPrediction, ...]
    skipped: tuple[tuple[str, str], ...]  # (video, one-line reason)
    seconds: float
    clips_per_video: int

    @property
    def videos_per_s(self) -> float:
        return len(self.predictions) / self.seconds if self.seconds > 0 else math.inf

    @property
    def clips_per_s(self) -> float:
        return self.videos_per_s * self.clips_per_video


class Predictor:
    """A loaded network that turns videos into labels. Build it with ``Predictor.load`` (or from a module in memory).

    ``forward`` maps a float batch (N, 3, T, H, W) in [-1, 1] to logits (N, classes).
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], *, clip: Sequence[int], class_names: Sequence[str], settings: PredictSettings | None = None, runtime: str = "torch", source: str = "") -> None:
        self.forward = forward
        self.clip = tuple(int(v) for v in clip)
        self.class_names = tuple(class_names)
        self.settings = settings or PredictSettings()
        self.runtime = runtime
        self.source = source

    @classmethod
    def load(cls, model: str | os.PathLike[str], *, runtime: str | None = None, classes: str | os.PathLike[str] | None = None, settings: PredictSettings | None = None) -> Predictor:
        """A predictor for a fine-tune output folder or an exported file (see the module's docstring); one-line ValueError when it cannot be."""
        settings = settings or PredictSettings()
        path = Path(model)
        folder = _finetune_folder(path)
        if runtime is None:
            runtime = "onnx" if path.suffix == ".onnx" else "torch"
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, but got {runtime!r}.")
        if folder is not None:
            forward, clip, names = _from_folder(folder, runtime, settings)
        else:
            forward, clip, names = _from_file(path, runtime, settings)
        if classes is not None:
            names = read_class_names(classes)
        return cls(forward, clip=clip, class_names=names, settings=settings, runtime=runtime, source=str(path))

    @classmethod
    def from_module(cls, module: torch.nn.Module, *, clip: Sequence[int], class_names: Sequence[str], settings: PredictSettings | None = None) -> Predictor:
        """A predictor for a network in memory (eval mode, on its device); what the fine-tune report's multi-view protocol uses."""
        return cls(_torch_forward(module, (settings or PredictSettings()).threads), clip=clip, class_names=class_names, settings=settings)

    # ------------------------------------------------------------ one video, one window, a stream
    def probabilities(self, clips: torch.Tensor) -> torch.Tensor:
        """Mean softmax over ``clips`` (uint8 or float (N, 3, T, H, W)): (classes,)."""
        x = normalize(clips) if clips.dtype == torch.uint8 else clips.to(torch.float32)
        logits = self.forward(x)
        if logits.shape[-1] != len(self.class_names):
            raise ValueError(f"class names must be one per output of the network ({logits.shape[-1]}), but got {len(self.class_names)}.")
        return torch.softmax(logits.float(), dim=1).mean(dim=0)

    def top(self, probabilities: torch.Tensor, *, video: str, clips: int) -> VideoPrediction:
        values, indices = probabilities.topk(min(self.settings.top_k, len(self.class_names)))
        return VideoPrediction(video=video, labels=tuple(self.class_names[i] for i in indices.tolist()), probabilities=tuple(round(v, 6) for v in values.tolist()), clips=clips)

    def video_clips(self, path: str | os.PathLike[str]) -> torch.Tensor:
        """The views x crops uint8 clips of one video; ValueError (one line) when it does not decode or is too short."""
        s = self.settings
        return torch.from_numpy(decode_views(path, self.clip, views=s.views, crops=s.crops, min_frames=s.min_frames))

    def predict_video(self, path: str | os.PathLike[str]) -> VideoPrediction:
        """Top-k of one video file."""
        return self.top(self.probabilities(self.video_clips(path)), video=str(path), clips=self.settings.clips)

    def predict_frames(self, frames: Sequence[np.ndarray], *, name: str = "frames") -> VideoPrediction:
        """Top-k of one window of RGB frames (H x W x 3 uint8 each, any size): T of them taken evenly, resized, as one clip."""
        if len(frames) == 0:
            raise ValueError("frames must hold at least one frame, but got none.")
        t, h, w = self.clip
        picked = [frames[i] for i in np.linspace(0, len(frames) - 1, t).round().astype(int)]
        clip = torch.from_numpy(np.stack([np.asarray(f, dtype=np.uint8) for f in picked])).permute(3, 0, 1, 2).float()  # (3, T, h0, w0)
        clip = torch.nn.functional.interpolate(clip, size=(h, w), mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8)
        return self.top(self.probabilities(clip[None]), video=name, clips=1)

    def stream(self, frames: Iterable[np.ndarray], *, window: int, hop: int | None = None) -> Iterator[VideoPrediction]:
        """A prediction per ``window`` consecutive frames of a stream (a camera, a long video), every ``hop`` frames (default: ``window``)."""
        check_int("Predictor.stream.window", window, low=1)
        hop = window if hop is None else hop
        check_int("Predictor.stream.hop", hop, low=1)
        buffer: list[np.ndarray] = []
        to_skip = 0
        for index, frame in enumerate(frames):
            if to_skip:
                to_skip -= 1
                continue
            buffer.append(frame)
            if len(buffer) == window:
                yield self.predict_frames(buffer, name=f"frames {index - window + 1}-{index}")
                buffer = buffer[hop:]
                to_skip = max(0, hop - window)

    def predict_videos(self, paths: Sequence[str | os.PathLike[str]], *, progress: bool = False) -> PredictionRun:
        """Every video's top-k; a video that does not decode or is too short is skipped (one stderr line) and listed."""
        from tqdm.auto import tqdm

        predictions, skipped = [], []
        start = time.perf_counter()
        with tqdm(total=len(paths), desc="predicting", unit="video", disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
            for path in paths:
                try:
                    predictions.append(self.predict_video(path))
                except (ValueError, OSError) as err:
                    reason = " ".join(str(err).split()) or type(err).__name__
                    skipped.append((str(path), reason))
                    bar.write(f"particle-nas: skipped {path}: {reason}", file=sys.stderr)
                bar.update()
        return PredictionRun(predictions=tuple(predictions), skipped=tuple(skipped), seconds=time.perf_counter() - start, clips_per_video=self.settings.clips)


# ---------------------------------------------------------------- loading
def _finetune_folder(path: Path) -> Path | None:
    for folder in (path, path / "finetune"):
        if folder.is_dir() and (folder / REPORT).is_file():
            return folder
    if path.is_dir():
        raise ValueError(f"MODEL must be a fine-tune output folder (holding {REPORT}) or an exported .onnx / .pt / .safetensors file, but {path} holds no {REPORT}.")
    return None


def _torch_forward(module: torch.nn.Module, threads: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    module.eval()
    first = next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")

    def forward(x: torch.Tensor) -> torch.Tensor:
        before = torch.get_num_threads()
        if threads is not None and threads != before:  # setting it costs time even when unchanged
            torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                return module(x.to(device)).cpu()
        finally:
            if threads is not None and threads != before:
                torch.set_num_threads(before)

    return forward


def _onnx_forward(data: bytes, threads: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        from particle_nas.evaluators import Int8Model

        model = Int8Model(data, threads=threads)
        model.session  # noqa: B018 - made now, so a broken file fails at load
    except ImportError:
        raise ValueError(ONNX_HINT) from None
    return model.forward


def _from_folder(folder: Path, runtime: str, settings: PredictSettings) -> tuple[Callable, tuple[int, ...], tuple[str, ...]]:
    try:
        report = json.loads((folder / REPORT).read_text())
        network = NetworkSpec.from_dict(report["network"])
        names = tuple(report["class_names"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{folder / REPORT} must be a fine-tune report (network, class_names), but it does not read ({' '.join(str(err).split())[:120]}).") from None
    if runtime == "int8":
        int8 = folder / INT8
        if not int8.is_file():
            raise ValueError(f"the int8 runtime must find {int8}, but it is not there: fine-tune with --quantize int8 to write it.")
        return _onnx_forward(int8.read_bytes(), settings.threads), network.clip, names
    model = finetuned_model(folder, report, network)
    if runtime == "onnx":
        return _onnx_forward(_exported_onnx(model, network), settings.threads), network.clip, names
    return _torch_forward(model, settings.threads), network.clip, names


def _exported_onnx(model: torch.nn.Module, network: NetworkSpec) -> bytes:
    """``model`` exported to ONNX (fp32) for the onnx runtime; without onnx installed, the one-line hint."""
    from particle_nas.evaluators import export_onnx

    try:
        return export_onnx(model, torch.zeros(1, *network.input_shape))
    except ImportError:
        raise ValueError(ONNX_HINT) from None


def finetuned_model(folder: Path, report: dict[str, Any], network: NetworkSpec) -> torch.nn.Module:
    """The fine-tuned network of ``folder`` (built as its mode built it, adapters included), its best weights loaded strictly."""
    from safetensors.torch import load_file

    from particle_nas.evaluators import FineTuneSettings, prepare_for_finetuning
    from particle_nas.space import build_network

    settings = FineTuneSettings(**{k: v for k, v in report.get("settings", {}).items() if k in FineTuneSettings.__dataclass_fields__})
    model = prepare_for_finetuning(build_network(network, seed=0), settings)
    best = folder / BEST
    if not best.is_file():
        raise ValueError(f"{folder} must hold the fine-tuned weights {BEST}, but it has none (did the run finish an epoch?).")
    model.load_state_dict(load_file(str(best)), strict=True)
    return model.eval()


def _from_file(path: Path, runtime: str, settings: PredictSettings) -> tuple[Callable, tuple[int, ...], tuple[str, ...]]:
    if not path.is_file():
        raise ValueError(f"MODEL must be a fine-tune output folder or an exported .onnx / .pt / .safetensors file, but {path} does not exist.")
    if path.suffix == ".onnx":
        if runtime == "torch":
            raise ValueError(f"runtime must be onnx or int8 for an ONNX file, but got 'torch' ({path}).")
        data = path.read_bytes()
        clip, outputs = _onnx_shape(data, path)
        return _onnx_forward(data, settings.threads), clip, default_class_names(outputs)
    network = _network_beside(path)
    if path.suffix == ".pt":
        if runtime != "torch":
            raise ValueError(f"runtime must be torch for a TorchScript file, but got {runtime!r} ({path}).")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's: export writes TorchScript, so it reads it
            module = torch.jit.load(str(path), map_location="cpu")
    elif path.suffix == ".safetensors":
        from ._deploy import trained_network

        if runtime == "int8":  # these are fp32 weights: running their ONNX export would be labelled int8 without being it
            raise ValueError(f"runtime must be torch or onnx for a .safetensors file, but got 'int8' ({path}): the int8 runtime reads a fine-tune output folder written with --quantize int8, or an int8 .onnx.")
        try:
            module = trained_network(network, path)
        except RuntimeError as err:
            raise ValueError(f"{path} must hold the weights of the network in {path.with_suffix('.yaml')}, but they do not fit ({' '.join(str(err).split())[:160]}).") from None
        if runtime == "onnx":
            return _onnx_forward(_exported_onnx(module, network), settings.threads), network.clip, default_class_names(network.num_classes)
    else:
        raise ValueError(f"MODEL must be a fine-tune output folder or a .onnx / .pt / .safetensors file, but got {path}.")
    return _torch_forward(module, settings.threads), network.clip, default_class_names(network.num_classes)


def _network_beside(path: Path) -> NetworkSpec:
    from ._export import load_network

    yaml_path = path.with_suffix(".yaml")
    if not yaml_path.is_file():
        raise ValueError(f"{path} must have its network file {yaml_path.name} beside it (as particle-nas export writes them), but there is none.")
    return load_network(yaml_path)


def _onnx_shape(data: bytes, path: Path) -> tuple[tuple[int, int, int], int]:
    """(the clip T, H, W of the graph's input, the number of outputs) of an ONNX network."""
    try:
        import onnx
    except ImportError:
        raise ValueError(ONNX_HINT) from None
    try:
        graph = onnx.load_from_string(data).graph
        dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        outputs = graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    except Exception as err:  # onnx's own errors: not an ONNX file
        raise ValueError(f"{path} must be an ONNX network, but it does not load ({' '.join(str(err).split())[:120]}).") from None
    if len(dims) != 5 or not all(dims[2:]) or not outputs:
        raise ValueError(f"{path} must take clips (N, 3, T, H, W) of a fixed size and return (N, classes), but its input is {dims}.")
    return (dims[2], dims[3], dims[4]), outputs


def default_class_names(count: int) -> tuple[str, ...]:
    return tuple(f"class{i}" for i in range(count))


def read_class_names(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names of a ``classInd.txt`` (``<index> <name>`` per line, in index order) or of a file with one name per line."""
    try:
        lines = [line.split() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as err:
        raise ValueError(f"--classes must be a readable file of class names, but {path} is not ({err.strerror or err}).") from None
    if lines and all(len(parts) == 2 and parts[0].isdigit() for parts in lines):
        return tuple(name for _, name in sorted((int(i), name) for i, name in lines))
    return tuple(" ".join(parts) for parts in lines)


# ---------------------------------------------------------------- which videos, and what is written
def video_paths(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Video files of ``sources``: files, folders (searched recursively for VIDEO_EXTENSIONS, sorted) and list files (one path per line, relative to the list)."""
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            paths.extend(videos_under(source))
        elif source.suffix.lower() in LIST_SUFFIXES and source.is_file():
            for line in source.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = Path(line.split()[0])
                    paths.append(entry if entry.is_absolute() else source.parent / entry)
        else:
            paths.append(source)  # a file that does not exist or decode is skipped with its reason
    return paths


def prediction_document(run: PredictionRun, predictor: Predictor) -> dict[str, Any]:
    """What predictions.json holds."""
    s = predictor.settings
    return {
        "model": predictor.source,
        "runtime": predictor.runtime,
        "clip": list(predictor.clip),
        "views": s.views,
        "crops": s.crops,
        "top_k": min(s.top_k, len(predictor.class_names)),
        "predictions": [p.to_dict() for p in run.predictions],
        "skipped": [{"video": video, "reason": reason} for video, reason in run.skipped],
        "seconds": run.seconds,
        "videos_per_s": run.videos_per_s,
        "clips_per_s": run.clips_per_s,
    }


def write_predictions(run: PredictionRun, predictor: Predictor, *, csv_path: str | os.PathLike[str] | None = None, json_path: str | os.PathLike[str] | None = None) -> list[Path]:
    """predictions.csv (video, label_1, probability_1, ..., clips) and / or predictions.json; each written whole."""
    import csv
    import io

    written = []
    if csv_path is not None:
        k = min(predictor.settings.top_k, len(predictor.class_names))
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["video", *(f"{what}_{i}" for i in range(1, k + 1) for what in ("label", "probability")), "clips"])
        for p in run.predictions:
            writer.writerow([p.video, *(v for pair in zip(p.labels, p.probabilities) for v in pair), p.clips])
        written.append(atomic_write(csv_path, lambda tmp: Path(tmp).write_text(buffer.getvalue(), encoding="utf-8")))
    if json_path is not None:
        text = json.dumps(prediction_document(run, predictor), indent=2)
        written.append(atomic_write(json_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8")))
    return written
