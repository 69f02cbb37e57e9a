"""The fine-tune report's evaluation protocols: 1 clip against N clips x crops, and before (linear probe) against after.

- Multi-view (``finetune.views`` x ``finetune.crops``, video folders): every
  validation video is decoded again as ``views`` uniformly spaced clips x
  ``crops`` crops (``evaluators.decode_views``) and classified by the mean of
  their softmax (``results.Predictor``), as X3D's and SlowFast's tables state
  "views"; the 1-clip row is the report's own top-1 (the training clip).
- Before / after (``finetune.linear_probe: true``): the loaded network with
  only its head trained (mode ``linear``, same data, epochs and seed, in
  ``finetune/linear-probe/``, checkpointed and resumable like the run) is
  "before"; the fine-tuned network is "after"; both per class.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch

PROBE_DIR = "linear-probe"


def multi_view(job, model, task) -> dict[str, Any] | None:
    """The N-clip x crops protocol on the validation videos, or None (1 x 1, or data that is not a video folder)."""
    from particle_nas.evaluators import VideoFolderConfig, list_videos
    from particle_nas.results import Predictor, PredictSettings

    s = job.settings
    if s.views * s.crops == 1 or not isinstance(job.data, VideoFolderConfig):
        return None
    n = task.num_classes
    k = min(5, n)
    # Every class ranked (top_k = n), so the top-1 and the top-k hits come from the one ranking predict makes.
    predictor = Predictor.from_module(copy.deepcopy(model).to("cpu").eval(), clip=job.network.clip, class_names=task.class_names, settings=PredictSettings(views=s.views, crops=s.crops, top_k=n))
    skipped = set(task.skipped)
    labels = {str(Path(job.data.root) / rel): label for rel, label in list_videos(job.data)[1] if rel not in skipped}
    print(f"particle-nas: testing the best epoch on {s.views} clips x {s.crops} crops per validation video", file=sys.stderr)
    run = predictor.predict_videos(list(labels))  # a video too short for the views is skipped with a line, as predict does
    if not run.predictions:
        return None
    index = {name: i for i, name in enumerate(task.class_names)}
    confusion = torch.zeros((n, n), dtype=torch.int64)
    hits = 0
    for prediction in run.predictions:
        label, ranked = labels[prediction.video], [index[name] for name in prediction.labels]
        confusion[label, ranked[0]] += 1
        hits += int(label in ranked[:k])
    count = int(confusion.sum())
    return {"views": s.views, "crops": s.crops, "clips_per_video": s.views * s.crops, "videos": count, "skipped": len(run.skipped), "top1": float(confusion.diagonal().sum()) / count, "top5": hits / count, "top_k": k, "confusion": confusion.tolist()}


def protocols(report: dict[str, Any], multi: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The report's ``protocols`` rows: 1 clip x 1 crop (its top-1), then the multi-view one when measured."""
    rows = [{"name": "1 clip x 1 crop", "views": 1, "crops": 1, "videos": report["data"]["val_videos"], "top1": report["top1"], "top5": report["top5"]}]
    if multi is not None:
        rows.append({"name": f"{multi['views']} clips x {multi['crops']} crops", **{k: multi[k] for k in ("views", "crops", "videos", "top1", "top5")}, **_per_class(multi["confusion"], report["class_names"])})
    return rows


def linear_probe(probe, model, task, *, progress: bool) -> dict[str, Any]:
    """Train ``model`` (``probe``'s: the job in mode linear, built by ``finetune.build_model``) into ``finetune/linear-probe/``; its validation result."""
    from particle_nas.evaluators import finetune, load_best, predict, read_checkpoint

    fingerprint = probe.fingerprint()
    out = probe.out_dir / PROBE_DIR
    print(f"particle-nas: linear probe (the loaded network, only its head trained) for the report's before/after -> {out}/", file=sys.stderr)
    result = finetune(model, task, config=probe.train, out_dir=out, fingerprint=fingerprint, checkpoint=read_checkpoint(out, fingerprint), progress=progress)
    load_best(model, result.best_path)
    predictions = predict(model, task.val, num_classes=task.num_classes, batch_size=probe.train.eval_batch_size)
    return {"best_epoch": result.best_epoch, "top1": predictions.top1, "top5": predictions.top5, "confusion": [list(r) for r in predictions.confusion]}


def before_after(report: dict[str, Any], probe: dict[str, Any] | None) -> dict[str, Any] | None:
    """The report's ``before_after``: the linear probe ("before") and the fine-tuned network ("after"), per class."""
    if probe is None:
        return None
    names = report["class_names"]
    after = {"protocol": f"fine-tuned ({report['mode']})", "top1": report["top1"], "top5": report["top5"], **_per_class(report["confusion"], names)}
    before = {"protocol": "linear probe (head only)", "top1": probe["top1"], "top5": probe["top5"], "best_epoch": probe["best_epoch"], **_per_class(probe["confusion"], names)}
    return {"before": before, "after": after, "gain_top1": report["top1"] - probe["top1"]}


def _per_class(confusion: list[list[int]], names: list[str]) -> dict[str, Any]:
    from particle_nas.results import classification_metrics

    metrics = classification_metrics(confusion, names)
    return {"per_class": [{"name": c.name, "recall": c.recall, "f1": c.f1, "support": c.support} for c in metrics.per_class], "macro_f1": metrics.macro.f1}
