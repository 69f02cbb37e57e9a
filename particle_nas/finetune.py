"""``particle-nas finetune``: train an exported network on a video folder, checkpointed and resumable, then report.

Everything is checked before anything is written (the data file, the network,
the weights, the videos and classes, an earlier run in the output folder):
bad input is one ValueError line and leaves the output folder as it was.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from particle_nas.config import DATA_KINDS, ConfigError, apply_overrides, build_section, check_sections, config_error, run_fields, section_values, to_plain
from particle_nas.evaluators import AFTER_TRAINING, INT8_MODEL, FineTuneSettings, TrainConfig, VideoFolderConfig
from particle_nas.exit_codes import EXIT_INTERRUPTED
from particle_nas.rounds import REPORT, PreviousRound, check_classes, grown_head, previous_val_top1, read_previous, round_entry
from particle_nas.space import NetworkSpec, SpecError, read_yaml

SECTIONS: tuple[str, ...] = ("name", "seed", "output_dir", "data", "train", "finetune")
FINETUNE_DIR = "finetune"
QUANTIZE_HINT = 'pip install -e ".[export]"'


@dataclass(frozen=True)
class FineTuneJob:
    """A validated fine-tuning job: which network, on which data, trained how, written where."""

    name: str  # the run: output goes to output_dir / name / finetune
    output_dir: Path
    seed: int  # initial weights of what is not loaded (head, adapters), batch order
    network: NetworkSpec  # as read from NETWORK.yaml (num_classes replaced with --new-head)
    network_file: str
    data: Any  # VideoFolderConfig, VideoPretextConfig (label-free) or SyntheticConfig, at the network's clip
    train: TrainConfig
    settings: FineTuneSettings
    weights_file: str | None
    new_head: bool
    inflate: bool = False  # weights_file holds the weights of the network's 2D form (space.as_2d), inflated by I3D's rule
    previous: PreviousRound | None = None  # --from: the round this one continues (its network and weights; the head grown to the data's classes)

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name

    @property
    def out_dir(self) -> Path:
        return self.run_dir / FINETUNE_DIR

    def fingerprint(self) -> dict[str, Any]:
        """Everything that decides the trained weights, but the number of epochs (a run may be continued to more).

        ``finetune.quantize``, ``views``, ``crops`` and ``linear_probe`` are left out
        (``AFTER_TRAINING``): they act after training, so a finished run may be
        quantized or tested again without training again.
        """
        weights = None
        if self.weights_file is not None:
            import hashlib

            weights = hashlib.sha256(Path(self.weights_file).read_bytes()).hexdigest()
        return {
            "seed": self.seed,
            "network": self.network.to_dict(),
            # added_later={}: every field counts (fine-tuning began after data.class_index; its runs have it)
            "data": to_plain(self.data, added_later={}),
            # epochs may grow, and device may change (a run interrupted on one GPU continues on another, or on the CPU)
            "train": {k: v for k, v in to_plain(self.train, added_later={}).items() if k not in ("epochs", "device")},
            "finetune": {k: v for k, v in to_plain(self.settings, added_later={}).items() if k not in AFTER_TRAINING},
            "weights": weights,
            "new_head": self.new_head,
            # added later: in the fingerprint only when set, so earlier runs keep theirs
            **({"inflated": True} if self.inflate else {}),
            **({"from_classes": list(self.previous.class_names)} if self.previous else {}),
        }


def load_job(
    network_file: str | None,
    data_file: str,
    *,
    mode: str | None = None,
    epochs: int | None = None,
    name: str | None = None,
    output_dir: str | None = None,
    seed: int | None = None,
    weights: str | None = None,
    new_head: bool = False,
    quantize: str | None = None,
    inflate: bool = False,
    previous: str | None = None,
) -> FineTuneJob:
    """Read and check NETWORK.yaml and DATA.yaml (command-line values win); a one-line ValueError on bad input.

    ``inflate``: ``weights`` are those of the network's 2D form (every temporal
    kernel 1, ``space.as_2d``), inflated by I3D's rule when the model is built.
    ``previous`` (``--from``): a finished fine-tune run to continue as a new
    round (``particle_nas/rounds.py``); it gives the network and the weights.
    """
    from particle_nas.results import load_network

    last = None
    if previous is not None:
        last = read_previous(previous)
        if network_file is not None or weights is not None or inflate:
            raise ConfigError(f"NETWORK, --weights and --inflate must be left out with --from (the network and weights are the previous round's), but got {network_file or weights}.")
        network_file, weights = str(last.folder / REPORT), str(last.weights)
        network = last.network
    elif network_file is None:
        raise ConfigError("NETWORK must be given (a network YAML), or --from a finished fine-tune run, but got neither.")
    else:
        network = load_network(network_file)
    if inflate:
        if weights is None:
            raise ConfigError("--inflate must come with --weights (the weights of the network's 2D form), but got no --weights.")
        from particle_nas.space import check_inflatable

        try:
            check_inflatable(network)
        except SpecError as err:
            raise ConfigError(f"{network_file}: --inflate: {err}") from None
    try:
        raw = read_yaml(data_file, what="data file")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    overrides = {"name": name, "seed": seed, "output_dir": output_dir, "train.epochs": epochs, "finetune.mode": mode, "finetune.quantize": quantize}
    try:
        job = _parse(raw, network, network_file=network_file, data_file=data_file, overrides=overrides, weights=weights, new_head=new_head or last is not None)
    except SpecError as err:
        raise config_error(data_file, err) from None
    if last is not None:
        check_classes(last, job.data.class_names)
        if last.mode == "adapters" and job.settings.mode != "adapters":
            raise ConfigError(f"finetune.mode must stay adapters after a round that trained adapters ({last.folder}), but got {job.settings.mode!r}.")
        return dataclasses.replace(job, new_head=False, previous=last)
    return dataclasses.replace(job, inflate=inflate)


def _parse(raw: Any, network: NetworkSpec, *, network_file: str, data_file: str, overrides: Mapping[str, Any], weights, new_head) -> FineTuneJob:
    check_sections(raw, SECTIONS)
    raw = apply_overrides(raw, overrides)  # command-line flags win over the file
    name, seed, output_dir = run_fields(raw, default_name=Path(data_file).stem)

    data_values = section_values(raw, "data")
    kind = data_values.pop("kind", None)
    if kind not in DATA_KINDS:
        raise SpecError("data.kind", f"must be one of {tuple(DATA_KINDS)} (video_folder for your videos)", kind)
    data_values.setdefault("seed", seed)
    clip = data_values.setdefault("clip", list(network.clip))  # decoded at the network's clip unless told
    if not isinstance(clip, (list, tuple)) or tuple(clip) != tuple(network.clip):
        raise SpecError("data.clip", f"must equal the network's clip {list(network.clip)} (from {network_file}; leave data.clip out to decode at it)", clip)
    data = build_section(DATA_KINDS[kind], data_values, "data")
    if isinstance(data, VideoFolderConfig):
        from particle_nas.evaluators import check_video_split

        check_video_split(data)
    if data.num_classes != network.num_classes:
        if not new_head:
            raise SpecError(
                "data",
                f"must have the network's {network.num_classes} classes ({network_file}) or the head must be replaced (--new-head)",
                f"{data.num_classes} classes {list(data.class_names)[:5]}{'...' if data.num_classes > 5 else ''}",
            )
        network = network.replace(num_classes=data.num_classes)

    train_values = section_values(raw, "train")
    train_values.setdefault("seed", seed)
    train = build_section(TrainConfig, train_values, "train")
    settings = build_section(FineTuneSettings, section_values(raw, "finetune"), "finetune")
    if settings.quantize == "int8":
        _require_onnxruntime()
    if weights is not None and not Path(weights).is_file():
        raise SpecError("--weights", "must be a .safetensors file", weights)
    return FineTuneJob(
        name=name,
        output_dir=Path(output_dir),
        seed=seed,
        network=network,
        network_file=network_file,
        data=data,
        train=train,
        settings=settings,
        weights_file=weights,
        new_head=new_head,
    )


def _require_onnxruntime() -> None:
    """A one-line ValueError with the install hint when int8 quantization cannot run here (checked before training)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ValueError(f"finetune.quantize int8 needs onnx and onnxruntime, which are not installed: {QUANTIZE_HINT}") from None


def build_model(job: FineTuneJob):
    """The network of ``job``, its weights loaded (checked), set up for its mode (on the CPU)."""
    from particle_nas.evaluators import prepare_for_finetuning
    from particle_nas.space import build_network

    weights = None
    if job.weights_file is not None:
        from safetensors.torch import load_file

        try:
            weights = load_file(job.weights_file)
        except Exception as err:  # safetensors' own error type: not a safetensors file, truncated, ...
            raise ValueError(f"{job.weights_file} must be a safetensors file of the network's weights, but it does not load ({' '.join(str(err).split())[:120]}).") from None
    model = build_network(job.network, seed=job.seed)
    if job.inflate:
        weights = _inflated(job, weights, model)
    if job.previous is not None:
        weights = grown_head(weights, model, old=job.previous.class_names, new=tuple(job.data.class_names))
    return prepare_for_finetuning(model, job.settings, seed=job.seed, weights=weights, where=job.weights_file or "weights", new_head=job.new_head)


def _inflated(job: FineTuneJob, weights_2d, model) -> dict:
    """``weights_2d`` (checked against the network's 2D form) inflated to ``model`` by I3D's rule; with --new-head the head keeps ``model``'s."""
    from particle_nas.evaluators import check_weights, head_linear_keys
    from particle_nas.space import as_2d, build_network, inflate_state_dict

    skip = head_linear_keys(model) if job.new_head else ()
    network_2d = build_network(as_2d(job.network), seed=job.seed)
    state_2d = check_weights(network_2d, weights_2d, where=f"{job.weights_file} (--inflate: the weights of the network's 2D form)", skip=skip)
    fresh = model.state_dict()
    return inflate_state_dict({**state_2d, **{k: fresh[k] for k in skip}}, model)


def run(job: FineTuneJob, *, progress: bool = True, resume_hint: str, device=None, on_epoch=None) -> int:
    """Check, train (or continue), evaluate the best epoch and write the report. Returns the exit status.

    Training and the report run on ``train.device`` (``device``, when given, replaces it): the CPU stays the CPU on a GPU machine.
    """
    from particle_nas.evaluators import check_finetune_memory, close_distributed, finetune, init_distributed, param_counts, read_checkpoint, resolve_device

    if device is not None:
        job = dataclasses.replace(job, train=dataclasses.replace(job.train, device=str(device)))
    device = resolve_device(job.train.device, field="train.device")  # one line when CUDA is asked for and not there
    distributed = init_distributed(device)  # one of the processes torchrun started, or None
    if distributed is not None and device.type == "cuda":  # one GPU per process
        device = resolve_device(f"cuda:{distributed.local_rank}")
        job = dataclasses.replace(job, train=dataclasses.replace(job.train, device=str(device)))
    main = distributed is None or distributed.is_main
    check_finetune_memory(job.network, job.train, device)  # one line when its training cannot fit, before it is built
    model = build_model(job)
    fingerprint = {**job.fingerprint(), **({"processes": distributed.world_size} if distributed else {})}  # the batch order and the schedule depend on it
    checkpoint = read_checkpoint(job.out_dir, fingerprint)  # refuses a run made with other settings, before anything is written
    task = _load_task(job, progress=progress and main)
    model.to(device)
    done = 0 if checkpoint is None else int(checkpoint["epoch"])
    counts = param_counts(model)
    if main:
        processes = f" x {distributed.world_size} processes ({distributed.backend})" if distributed else ""
        print(
            f"particle-nas: fine-tune {job.name!r} ({job.settings.mode}): {counts.trainable:,} of {counts.total:,} parameters train ({counts.ratio:.2%}); "
            f"{len(task.train)} training / {len(task.val)} validation clips, {task.num_classes} classes, {job.train.epochs} epochs on {device}{processes}"
            + (f"; trained already ({done} epoch{'s' * (done != 1)}): nothing to train" if done >= job.train.epochs else f"; continuing after epoch {done}" if done else "")
            + f" -> {job.out_dir}/",
            file=sys.stderr,
        )
    try:
        result = finetune(model, task, config=job.train, out_dir=job.out_dir, fingerprint=fingerprint, checkpoint=checkpoint, progress=progress, on_epoch=on_epoch, distributed=distributed)
    except KeyboardInterrupt:
        last = read_checkpoint(job.out_dir, fingerprint)
        where = f"the checkpoint after epoch {last['epoch']} is kept" if last else "no epoch finished"
        print(f"particle-nas: interrupted; {where}. To continue: {resume_hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    shards = _shards(distributed, len(task.train), seed=job.train.seed) if distributed else None
    close_distributed()
    if not main:  # rank 0 evaluates and writes the report
        return 0
    return _report(job, model, task, result, counts, device=device, shards=shards, progress=progress)


def _shards(distributed, n: int, *, seed: int) -> dict[str, Any]:
    """What each process trained on in epoch 1, gathered from every process: clips each, clips in more than one shard, clips covered."""
    from collections import Counter

    from particle_nas.evaluators import gather_objects, shard_indices

    shards = gather_objects(shard_indices(n, rank=distributed.rank, world_size=distributed.world_size, seed=seed, epoch=1).tolist())
    seen = Counter(i for shard in shards for i in shard)
    return {
        "processes": distributed.world_size,
        "backend": distributed.backend,
        "train_clips": n,
        "clips_per_process": [len(shard) for shard in shards],
        "overlapping_clips": sum(1 for count in seen.values() if count > 1),
        "covered_clips": len(seen),
    }


def _report(job: FineTuneJob, model, task, result, counts, *, device, shards: dict[str, Any] | None, progress: bool) -> int:
    """Evaluate the best epoch (its protocols, its rounds), quantize it when asked, write the report and say so; returns the exit status."""
    from particle_nas.evaluators import load_best
    from particle_nas.protocols import before_after, linear_probe, multi_view, protocols

    load_best(model, result.best_path)
    quantization = _quantize(job, model, task) if job.settings.quantize == "int8" else None
    report = _measure(job, model, task, result, counts, device=device, quantization=quantization, distributed=shards)
    report["protocols"] = protocols(report, multi_view(job, model, task))
    probe = None
    if job.settings.linear_probe and job.settings.mode != "linear":
        probe_job = dataclasses.replace(job, settings=dataclasses.replace(job.settings, mode="linear"))
        probe = linear_probe(probe_job, build_model(probe_job).to(device), task, progress=progress)
    report["before_after"] = before_after(report, probe)
    report["rounds"] = _rounds(job, model, report)
    from particle_nas.results import write_finetune_report

    json_path, html_path = write_finetune_report(report, job.out_dir)
    print(
        f"best epoch {result.best_epoch}: top-1 {report['top1']:.4f}, top-{report['top_k']} {report['top5']:.4f} "
        f"(macro F1 {report['macro']['f1']:.4f}) -> {result.best_path}"
    )
    if quantization is not None:
        print(
            f"int8 ({quantization['backend']}): top-1 {quantization['top1']['int8']:.4f} (fp32 {quantization['top1']['fp32']:.4f}), "
            f"{quantization['size_bytes']['int8']:,} bytes (fp32 {quantization['size_bytes']['fp32']:,}) -> {job.out_dir / INT8_MODEL}"
        )
    for row in report["protocols"][1:]:
        print(f"{row['name']}: top-1 {row['top1']:.4f} (1 clip: {report['top1']:.4f})")
    if report["before_after"]:
        print(f"before (linear probe): top-1 {report['before_after']['before']['top1']:.4f}; after ({job.settings.mode}): {report['top1']:.4f}")
    last = report["rounds"][-1]
    if last["previous_val"]:
        pv = last["previous_val"]
        print(f"round {last['round']}: top-1 {last['top1']:.4f} on its validation set; on round {last['round'] - 1}'s: {pv['top1_after']:.4f} (was {pv['top1_before']:.4f}: forgetting {pv['forgetting']:+.4f})")
    print(f"wrote {json_path}, {html_path}")
    return 0


def _rounds(job: FineTuneJob, model, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every round so far: the previous run's, then this one (its top-1 on the previous round's validation set)."""
    if job.previous is None:
        return [round_entry(report, number=1)]
    rounds = job.previous.rounds
    previous_val = previous_val_top1(job.previous, model, classes=tuple(job.data.class_names), batch_size=job.train.eval_batch_size)
    return [*rounds, round_entry(report, number=len(rounds) + 1, previous_val=previous_val, previous_classes=job.previous.class_names)]


def _quantize(job: FineTuneJob, model, task) -> dict[str, Any]:
    """Int8 of the best epoch's model, calibrated on training clips, saved as INT8_MODEL and measured against it.

    Top-1 and top-5 of both are over every validation clip (``predict``); sizes (the
    two ONNX files), CPU latency and top-1 agreement come from ``compare_int8``, on
    at most CALIBRATION_CLIPS validation clips (the first ones).
    """
    import copy

    import torch

    from particle_nas.evaluators import CALIBRATION_CLIPS, calibration_batches, compare_int8, load_int8, predict, quantize_int8, save_int8

    cpu_model = copy.deepcopy(model).to("cpu").eval()
    calibration = calibration_batches(task, seed=job.seed)
    print(f"particle-nas: quantizing the best epoch to int8 (onnxruntime, calibrated on {sum(map(len, calibration))} training clips)", file=sys.stderr)
    path = save_int8(quantize_int8(cpu_model, calibration, threads=torch.get_num_threads()), job.out_dir / INT8_MODEL)
    int8 = load_int8(path)  # what the file holds is what is measured
    batch = job.train.eval_batch_size
    fp32, quantized = (predict(m, task.val, num_classes=task.num_classes, batch_size=batch) for m in (cpu_model, int8))
    clips, labels = task.val.batch(slice(0, CALIBRATION_CLIPS))
    compared = compare_int8(cpu_model, int8, clips, labels, batch_size=batch)
    return {
        "backend": compared["backend"],
        "file": INT8_MODEL,
        "calibration_clips": sum(map(len, calibration)),
        "size_bytes": {"fp32": compared["size_bytes_fp32"], "int8": compared["size_bytes_int8"]},
        "weight_bytes": {"fp32": compared["weight_bytes_fp32"], "int8": compared["weight_bytes_int8"]},
        "latency_ms": {"fp32": compared["latency_ms_fp32"], "int8": compared["latency_ms_int8"], "fp32_onnxruntime": compared["latency_ms_fp32_onnxruntime"]},
        "top1": {"fp32": fp32.top1, "int8": quantized.top1},
        "top5": {"fp32": fp32.top5, "int8": quantized.top5},
        "compared_clips": len(clips),
        "top1_agreement": compared["top1_agreement"],
        "max_abs_logit_diff": compared["max_abs_logit_diff"],
        "confusion": [list(row) for row in quantized.confusion],
    }


def _load_task(job: FineTuneJob, *, progress: bool):
    from particle_nas.evaluators import load_task

    job.run_dir.mkdir(parents=True, exist_ok=True)
    return load_task(job.data, cache_dir=job.run_dir.resolve(), progress=progress)


def _measure(job: FineTuneJob, model, task, result, counts, *, device, quantization: dict[str, Any] | None = None, distributed: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the report holds: the best epoch's predictions on the validation clips, costs, CPU latency."""
    import copy

    import torch

    from particle_nas.evaluators import Latency, count_cost, predict
    from particle_nas.results import finetune_report
    from particle_nas.space import cost

    predictions = predict(model, task.val, num_classes=task.num_classes, batch_size=job.train.eval_batch_size)
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    latency = Latency().measure(cpu_model, (torch.zeros((1, *job.network.input_shape)), torch.zeros(1, dtype=torch.int64)))
    skipped = list(getattr(task, "skipped", ()))
    return finetune_report(
        {
            "name": job.name,
            "mode": job.settings.mode,
            "settings": dataclasses.asdict(job.settings),
            "network_file": os.fspath(job.network_file),
            "network": job.network.to_dict(),
            "weights": job.weights_file,
            "new_head": job.new_head,
            "inflated": job.inflate,
            "device": str(device),
            "data": {"root": getattr(job.data, "root", None), "clip": list(job.data.clip), "train_videos": len(task.train), "val_videos": len(task.val), "skipped": skipped},
            "data_kind": next(kind for kind, cls in DATA_KINDS.items() if isinstance(job.data, cls)),
            "data_config": _data_config(job.data),  # what a later round (--from) reads this round's validation set with
            "train": dataclasses.asdict(job.train),
            "epochs": [{"epoch": i + 1, "train_loss": loss, "val_top1": acc} for i, (loss, acc) in enumerate(zip(result.train_loss, result.val_top1))],
            "best_epoch": result.best_epoch,
            "resumed_from": result.resumed_from,
            "top1": predictions.top1,
            "top5": predictions.top5,
            "top_k": predictions.top_k,
            "class_names": list(task.class_names),
            "confusion": [list(row) for row in predictions.confusion],
            "params": {"trainable": counts.trainable, "total": counts.total, "ratio": counts.ratio},
            "flops": {"network": cost(job.network).flops, "trained_model": count_cost(cpu_model, input_shape=job.network.input_shape).flops},
            "latency_ms_cpu": latency,
            "distributed": distributed,  # trained by several processes (torchrun): _shards
            "quantization": quantization,  # finetune.quantize int8: fp32 against int8 (see _quantize, results/_finetune_report.py)
        }
    )


def _data_config(data) -> dict[str, Any]:
    """The data section as it was read, its paths absolute (a later round may run from another folder)."""
    values = {f.name: to_plain(getattr(data, f.name), added_later={}) for f in dataclasses.fields(data) if f.init}
    if isinstance(data, VideoFolderConfig):
        root = Path(data.root)
        for name in ("train_list", "val_list", "hmdb_split_dir", "class_index"):
            value = values.get(name)
            if value is not None and not (root / value).exists() and Path(value).exists():
                values[name] = str(Path(value).resolve())
        values["root"] = str(root.resolve())
    return values


def cmd_finetune(args) -> int:
    job = load_job(
        args.network,
        args.data,
        mode=args.mode,
        epochs=args.epochs,
        name=args.name,
        output_dir=args.output_dir,
        seed=args.seed,
        weights=args.weights,
        new_head=args.new_head,
        quantize=args.quantize,
        inflate=args.inflate,
        previous=args.previous,
    )
    command = ["particle-nas", *getattr(args, "argv", sys.argv[1:])]
    return run(job, progress=not args.no_progress, resume_hint=shlex.join(command))
