"""Continual fine-tuning rounds: ``particle-nas finetune --from PREVIOUS --data NEW.yaml``.

A round starts from the previous round's fine-tuned network (its report's
network and mode, its ``best.safetensors``) and trains on new data: new videos
of the same classes, or more classes, the head grown (the rows of the classes
it knew are kept, matched by name; the new rows start fresh). Every class of
the previous round must stay. The report keeps every round (``rounds``): its
classes, its own validation top-1, and its top-1 on the previous round's
validation set before (the previous network) and after (this one): forgetting, shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from particle_nas.evaluators import BEST_WEIGHTS as BEST
from particle_nas.results import REPORT_JSON as REPORT
from particle_nas.space import NetworkSpec


@dataclass(frozen=True)
class PreviousRound:
    """The fine-tune output a round continues from."""

    folder: Path  # runs/NAME/finetune
    report: dict[str, Any]

    @property
    def network(self) -> NetworkSpec:
        return NetworkSpec.from_dict(self.report["network"])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.report["class_names"])

    @property
    def weights(self) -> Path:
        return self.folder / BEST

    @property
    def mode(self) -> str:
        return str(self.report.get("mode", "full"))

    @property
    def rounds(self) -> list[dict[str, Any]]:
        """Every round so far; a report written before rounds were kept is round 1."""
        return list(self.report.get("rounds") or [round_entry(self.report, number=1)])


def read_previous(path: str) -> PreviousRound:
    """The fine-tune output at ``path`` (``runs/NAME`` or ``runs/NAME/finetune``), or a one-line ValueError."""
    for folder in (Path(path), Path(path) / "finetune"):
        if (folder / REPORT).is_file() and (folder / BEST).is_file():
            try:
                report = json.loads((folder / REPORT).read_text())
                NetworkSpec.from_dict(report["network"]), tuple(report["class_names"])
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"--from {path}: {folder / REPORT} must be a fine-tune report, but it does not read ({' '.join(str(err).split())[:120]}).") from None
            return PreviousRound(folder=folder, report=report)
    raise ValueError(f"--from must be a finished fine-tune run (runs/NAME, holding finetune/{REPORT} and finetune/{BEST}), but got {path!r}.")


def check_classes(previous: PreviousRound, classes: tuple[str, ...]) -> None:
    """A round keeps every class of the previous one (its head grows, never shrinks)."""
    lost = [name for name in previous.class_names if name not in classes]
    if lost:
        raise ValueError(f"data must keep every class of the previous round ({len(previous.class_names)} in {previous.folder}), but it lacks {lost[:5]}.")


def grown_head(weights: dict[str, torch.Tensor], model: torch.nn.Module, *, old: tuple[str, ...], new: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """``weights`` with the head's last linear layer for the ``new`` classes: each old class's row where it now is, new classes' rows from ``model``."""
    from particle_nas.evaluators import head_linear_keys

    fresh = model.state_dict()
    out = dict(weights)
    for key in head_linear_keys(model):
        grown = fresh[key].clone()
        for i, name in enumerate(old):
            grown[new.index(name)] = weights[key][i]
        out[key] = grown
    return out


def round_entry(report: dict[str, Any], *, number: int, previous_val: dict[str, Any] | None = None, previous_classes: tuple[str, ...] = ()) -> dict[str, Any]:
    """One round of the report's ``rounds``: what trained on what, and how it did on its own and on the previous round's validation set."""
    data = report.get("data") or {}
    return {
        "round": number,
        "name": report.get("name"),
        "data": data.get("root"),
        "classes": list(report["class_names"]),
        "new_classes": [c for c in report["class_names"] if previous_classes and c not in previous_classes],
        "train_videos": data.get("train_videos"),
        "val_videos": data.get("val_videos"),
        "top1": report["top1"],
        "previous_val": previous_val,  # {"top1_before", "top1_after", "forgetting", "clips"}; None for round 1 (or when the previous data is gone)
    }


def previous_val_top1(previous: PreviousRound, model: torch.nn.Module, *, classes: tuple[str, ...], batch_size: int) -> dict[str, Any] | None:
    """Top-1 of ``model`` (this round's classes) on the previous round's validation clips, beside the previous network's own; None when its data is not recorded or gone."""
    from particle_nas.evaluators import ClipSet, evaluate_accuracy

    val = _previous_val_clips(previous)
    if val is None:
        return None
    mapping = torch.tensor([classes.index(name) for name in previous.class_names])
    after = evaluate_accuracy(model, ClipSet(clips=val.clips, labels=mapping[val.labels]), batch_size=batch_size)
    before = float(previous.report["top1"])
    return {"top1_before": before, "top1_after": after, "forgetting": before - after, "clips": len(val)}


def _previous_val_clips(previous: PreviousRound):
    from particle_nas.config import DATA_KINDS
    from particle_nas.evaluators import load_task

    kind, values = previous.report.get("data_kind"), previous.report.get("data_config")
    if kind not in DATA_KINDS or not isinstance(values, dict):
        return None
    try:
        config = DATA_KINDS[kind](**{k: tuple(v) if k == "clip" else v for k, v in values.items()})
    except (ValueError, TypeError):  # the previous videos moved or are gone
        return None
    return load_task(config, cache_dir=previous.folder.parent.resolve(), progress=False).val  # every data kind, as fine-tuning loaded it
