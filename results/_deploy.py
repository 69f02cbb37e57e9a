"""Deploying a picked trial: its trained proxy weights, and the built network as TorchScript or ONNX.

The search saves each trained trial's ``state_dict`` as safetensors under
``RUN/weights/`` and records the path (relative to the run) in the trial's
user attribute ``weights``; a trial that reused an identical particle's
result points at its source's file. onnx is imported only when asked for.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from particle_nas.space import NetworkSpec, build_network

from ._files import atomic_write

if TYPE_CHECKING:
    import optuna
    import torch
    from torch import nn

WEIGHTS_ATTR = "weights"  # trial user attribute: the weights file, relative to the run directory
FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx", "weights": ".safetensors"}


class MissingWeightsError(ValueError):
    """A trial without weights to export: it saved none, or its file is gone (not a file that was refused)."""


def trial_weights(study: optuna.Study, number: int, run_dir: str | os.PathLike[str]) -> Path:
    """The trained weights file of trial ``number``, checked by ``run_weights``.

    MissingWeightsError (a ValueError) when the trial has none or its file is gone;
    ValueError when the study points at a file that is refused.
    """
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == int(number)]
    if not trials:
        raise ValueError(f"trial must be in study {study.study_name!r}, but got {number}.")
    relative = trials[0].user_attrs.get(WEIGHTS_ATTR)
    if not relative:
        lost = trials[0].user_attrs.get("weights_error")  # the disk was full when the trial saved them
        why = f"its weights were {lost}" if lost else "runs made before weights were saved, or an evaluator that does not save them"
        raise MissingWeightsError(f"trial {number} must have saved weights to export them, but it has none ({why}).")
    return run_weights(run_dir, relative, what=f"trial {number}'s weights")


def run_weights(run_dir: str | os.PathLike[str], relative: Any, *, what: str = "weights") -> Path:
    """``run_dir / relative`` resolved, once checked to be a safetensors file inside the run directory.

    The path comes from the study, and a run directory may come from someone else:
    a path that resolves outside ``run_dir`` (``../../etc/passwd``, an absolute path,
    a symlink pointing out), a name not ending in ``.safetensors``, or a file whose
    safetensors header does not parse (a pickle renamed, which is never unpickled)
    is refused in one line (ValueError).
    """
    where = f"{what} must be a file inside the run directory {run_dir}, but got {relative!r}"
    if not isinstance(relative, str) or "\0" in relative:
        raise ValueError(f"{where}.")
    path = Path(run_dir) / relative
    resolved = path.resolve()
    if not resolved.is_relative_to(Path(run_dir).resolve()):
        raise ValueError(f"{where} (resolving to {resolved}).")
    if not resolved.is_file():
        raise MissingWeightsError(f"{what} file must exist, but {path} does not.")
    if resolved.suffix != SUFFIXES["weights"]:
        raise ValueError(f"{what} must be a {SUFFIXES['weights']} file, but got {relative!r}.")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(resolved), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{what} must load as safetensors, but {path} does not ({' '.join(str(err).split())}).") from None
    return resolved


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state_dict from a ``.safetensors`` file, or from a torch file loaded with ``weights_only=True``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def save_state_dict(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model.state_dict()`` as safetensors, atomically."""
    from safetensors.torch import save_file

    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def copy_weights(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> Path:
    return atomic_write(destination, lambda tmp: shutil.copyfile(source, tmp))


def trained_network(network: NetworkSpec, weights: str | os.PathLike[str] | None, *, seed: int = 0) -> nn.Module:
    """``build_network(network)`` in eval mode, with ``weights`` loaded strictly when given."""
    model = build_network(network, seed=seed)
    if weights is not None:
        model.load_state_dict(load_state_dict(weights), strict=True)
    return model.eval()


def export_network(model: nn.Module, network: NetworkSpec, path: str | os.PathLike[str], *, format: str) -> Path:
    """Write ``model`` (built from ``network``) as TorchScript (traced) or ONNX with a dynamic batch axis.

    The input is ``clip`` of shape (batch, C, T, H, W) = (N, *network.input_shape);
    the output ``logits`` is (batch, num_classes).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, but got {format!r}.")
    import torch

    from particle_nas.evaluators import export_onnx

    model = model.eval()
    example = torch.zeros(1, *network.input_shape)
    if format == "onnx":
        data = export_onnx(model, example)
        return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python ints (fixed clip size)
        traced = torch.jit.trace(model, example)
        return atomic_write(path, lambda tmp: traced.save(tmp))


def export_outputs(*, network: NetworkSpec, out: Path, weights: Path | None, copy: bool, formats: tuple[str, ...], seed: int = 0) -> dict[str, Any]:
    """What ``particle-nas export`` writes beside the YAML: ``{"weights": path, "onnx": path, ...}``."""
    written: dict[str, Any] = {}
    if copy and weights is not None:
        written["weights"] = copy_weights(weights, out.with_suffix(SUFFIXES["weights"]))
    if formats:
        model = trained_network(network, weights, seed=seed)
        for fmt in formats:
            written[fmt] = export_network(model, network, out.with_suffix(SUFFIXES[fmt]), format=fmt)
    return written
