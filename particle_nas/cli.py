"""The ``particle-nas`` command line.

Bad input (a config or particle file that breaks a rule, a run that does not
exist, an unknown pick rule) ends with one ``particle-nas: error: ...`` line on
stderr and exit status 2, never a traceback (set PARTICLE_NAS_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from particle_nas.exit_codes import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_NO_TRIAL, EXIT_OK, EXIT_SOME_FAILED, EXIT_STOPPED


def _quiet_libraries() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("fvcore").setLevel(logging.ERROR)


# The flags of ``particle-nas search`` that set a config field: each goes through load_config(overrides=...), see config.apply_overrides.
SEARCH_OVERRIDES: tuple[str, ...] = ("trials", "timeout", "seed", "name", "output_dir", "sampler", "early_stopping", "backend")


def cmd_search(args: argparse.Namespace) -> int:
    from particle_nas.config import load_config

    config = load_config(args.config, overrides={key: getattr(args, key) for key in SEARCH_OVERRIDES})
    resume_hint = f"particle-nas resume {config.run_dir}"
    return _search(config, run_dir=config.run_dir, workers=args.workers, storage=args.storage, address=args.address, gpus=args.gpus, progress=not args.no_progress, resume_hint=resume_hint)


def cmd_resume(args: argparse.Namespace) -> int:
    from particle_nas.config import parse_config
    from particle_nas.results import open_run
    from particle_nas.search import read_run_file

    run_dir = Path(args.run)
    started = read_run_file(run_dir)
    study = open_run(run_dir, storage=args.storage)
    raw = study.user_attrs.get("config")
    if not isinstance(raw, dict):
        raise ValueError(f"{run_dir} must hold a study made by particle-nas search (its config is stored on the study), but it has none.")
    overrides = {"name": study.study_name, "output_dir": str(run_dir.parent), "trials": args.trials, "timeout": args.timeout}
    if "sampler" not in (raw.get("search") or {}):  # a run that named none keeps the one it ran with (the default was gp before auto)
        overrides["sampler"] = (study.user_attrs.get("fingerprint") or {}).get("search", {}).get("sampler")
    config = parse_config(raw, source=str(run_dir), overrides=overrides)
    workers = args.workers if args.workers is not None else started.get("workers")
    address = args.address if args.address is not None else started.get("address")
    gpus = args.gpus if args.gpus is not None else started.get("gpus")
    return _search(config, run_dir=run_dir, workers=workers, storage=args.storage, address=address, gpus=gpus, progress=not args.no_progress, resume_hint=f"particle-nas resume {run_dir}")


def _search(config, *, run_dir: Path, workers: int | None, storage: str | None, address: str | None, gpus, progress: bool, resume_hint: str) -> int:
    """Run (or resume) the search of ``config`` in ``run_dir``, write its outputs and say how it went; returns the exit status."""
    from particle_nas.config import make_evaluator
    from particle_nas.search import RunLayout, SearchJob, log_to_file, run

    gpus = _checked_run_options(config, workers=workers, gpus=gpus)
    _quiet_libraries()
    print(f"particle-nas: search {config.name!r}: {config.search.trials} trials, sampler {config.search.sampler}, backend {config.search.backend}, seed {config.seed} -> {run_dir}/", file=sys.stderr)
    log_to_file(RunLayout(Path(run_dir)).log_file)
    job = SearchJob(
        run_dir=Path(run_dir),
        name=config.name,
        space=config.space,
        network=config.network,
        evaluator=make_evaluator(config, cache_dir=Path(run_dir).resolve(), progress=progress),  # ProxyEvaluator, or ReplayEvaluator with evaluators.replay
        settings=config.search,
        seed=config.seed,
        fingerprint=config.fingerprint(),
        config=config.raw,
        storage=storage,
        workers=workers,
        address=address if config.search.backend == "ray" else None,
        gpus=gpus,
    )
    summary = run(job, progress=progress)
    return _report_search(config, summary, run_dir=Path(run_dir), resume_hint=resume_hint)


def _checked_run_options(config, *, workers: int | None, gpus) -> tuple[int, ...] | None:
    """--workers and --gpus refused in one line before anything is written; returns the GPU indices --gpus names."""
    from particle_nas.evaluators import check_gpus
    from particle_nas.search import check_run_options

    check_run_options(config.search, workers=workers, gpus=gpus, field="--gpus")
    return None if gpus is None else check_gpus(gpus, config.train.device)


def _report_search(config, summary, *, run_dir: Path, resume_hint: str) -> int:
    """Write the run's outputs (all of them when a trial completed, else trials.csv), print how the search went; returns the exit status."""
    from particle_nas.results import baseline_lines, open_run, trials_table, write_run_outputs, write_trials_csv
    from particle_nas.search import RunLayout, shown_location

    layout = RunLayout(run_dir)
    study = open_run(run_dir, study_name=config.name, storage=summary.storage)
    if summary.complete:
        outputs = write_run_outputs(study, run_dir, pick=config.search.export)
        print(f"wrote {outputs.trials_csv}, {outputs.pareto_html}, {outputs.dashboard_html}, {outputs.best_yaml}")
        print(f"best.yaml: trial {outputs.chosen} by {config.search.export!r}; Pareto front: {outputs.n_pareto} of {outputs.n_complete} complete trials")
    else:
        print(f"wrote {write_trials_csv(trials_table(study), layout.trials_csv)}")
    print(
        f"{summary.finished}/{summary.target} trials finished ({summary.complete} complete, "
        f"{f'{summary.stopped} stopped early, ' if summary.stopped else ''}{summary.failed} failed; "
        f"{summary.new} new this run, {summary.reused} reused identical networks)"
    )
    if summary.hypervolume is not None:
        print(f"hypervolume of the accuracy-FLOPs front: {summary.hypervolume:.4f} (log FLOPs from the space's cheapest network to 1.1 x its largest; docs/dashboard.md)")
    if summary.baselines:
        print(f"baselines: {summary.baselines} baselines + {summary.finished - summary.baselines} searched")
        for line in baseline_lines(trials_table(study)):
            print(f"  {line}")
    print(f"optuna-dashboard {shown_location(summary.storage)}")
    return _search_status(summary, trials_csv=layout.trials_csv, resume_hint=resume_hint)


def _search_status(summary, *, trials_csv: Path, resume_hint: str) -> int:
    """The exit status of a search, with the line that explains it on stderr (interrupted, timed out, failed trials, none complete)."""
    if summary.interrupted:
        print(f"particle-nas: interrupted; completed trials are saved. To continue: {resume_hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if summary.timed_out:
        print(f"particle-nas: timeout reached; to add the missing trials: {resume_hint}", file=sys.stderr)
    if summary.failed:
        reasons = "; ".join(f"{count}x {reason}" for reason, count in summary.fail_reasons[:3])
        print(f"particle-nas: {summary.failed} trial(s) failed: {reasons} (fail_reason in {trials_csv})", file=sys.stderr)
    if summary.complete == 0:
        print("particle-nas: error: no trial completed; see fail_reason in trials.csv", file=sys.stderr)
        return EXIT_NO_TRIAL
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


def _load_network_from_file(path: str, clip: Sequence[int] | None, classes: int | None):
    from particle_nas.results import load_network
    from particle_nas.space import NetworkSpec

    network = load_network(path, default=NetworkSpec())
    changes = {}
    if clip is not None:
        changes["clip"] = tuple(clip)
    if classes is not None:
        changes["num_classes"] = classes
    return network.replace(**changes) if changes else network


def cmd_cost(args: argparse.Namespace) -> int:
    from particle_nas.evaluators import METRIC_INFO, TrainConfig, human, optimizer_states
    from particle_nas.space import cost as analytic_cost
    from particle_nas.space import training_memory

    network = _load_network_from_file(args.particle, args.clip, args.classes)
    train = TrainConfig() if args.batch_size is None else TrainConfig(batch_size=args.batch_size)
    cost = analytic_cost(network)  # arithmetic on the spec: nothing is built, whatever the clip
    memory = training_memory(network, batch_size=train.batch_size, optimizer_states=optimizer_states(train))
    c, t, h, w = network.input_shape
    for i, p in enumerate(network.stage_particles if isinstance(network.particle, tuple) else (network.particle,)):
        label = f"stage {i}:" if isinstance(network.particle, tuple) else "particle:"
        print(f"{label} {p.factorization} / {p.wiring}, kernel {p.temporal_kernel}x{p.spatial_kernel}x{p.spatial_kernel}, prune {p.prune_ratio:g}")
    print(f"network:  widths {list(network.widths)}, depths {list(network.depths)}, input {c}x{t}x{h}x{w}, {network.num_classes} classes")
    print(f"params:   {cost.params:,} ({METRIC_INFO['params'].format(cost.params)})")
    print(f"FLOPs:    {cost.flops:,} ({METRIC_INFO['flops'].format(cost.flops)}) multiply-adds per clip (conv + linear; analytic, equal to fvcore's count)")
    print(
        f"memory:   about {human(memory.total, 'B')} to train at batch {memory.batch_size} in fp32 with {train.optimizer} (estimated: activations "
        f"{human(memory.activations, 'B')}; weights, gradients and optimizer state {human(memory.weights, 'B')})"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from particle_nas.evaluators import METRIC_INFO
    from particle_nas.results import open_run, particle_document, pick, trials_table, write_particle_yaml

    run_dir = Path(args.run)
    study = open_run(run_dir, study_name=args.study)
    table = trials_table(study)
    row = pick(table, args.pick)
    document = particle_document(row, run=str(run_dir), pick=args.pick)
    out = Path(args.output) if args.output else run_dir / "export.yaml"
    write_particle_yaml(document, out)
    src = document["source"]
    shown = ", ".join(f"{name} {METRIC_INFO[name].format(src[name])}" for name in ("accuracy", "flops", "params"))
    print(f"trial {src['trial']}: {shown} -> {out}")
    _export_deployables(args, study, run_dir, document, out)
    return 0


def _export_deployables(args: argparse.Namespace, study, run_dir: Path, document: dict, out: Path) -> None:
    """--weights and --format: the trained weights, and the built network as TorchScript / ONNX."""
    if not args.weights and not args.format:
        return
    from particle_nas.results import MissingWeightsError, export_outputs, trial_weights
    from particle_nas.space import NetworkSpec

    if "network" not in document:
        raise ValueError(f"trial {document['source']['trial']} must record its network to export weights or a model, but it has none.")
    network = NetworkSpec.from_dict(document["network"])
    weights = None
    try:  # a weights path the study gives that is refused (outside the run, not safetensors) fails the export, even without --weights
        weights = trial_weights(study, document["source"]["trial"], run_dir)
    except MissingWeightsError:
        if args.weights:
            raise
    if weights is None:
        print(f"particle-nas: note: trial {document['source']['trial']} has no saved weights; the exported model is untrained (seed {study.user_attrs.get('seed', 0)})", file=sys.stderr)
    seed = int(study.user_attrs.get("seed", 0))
    written = export_outputs(network=network, out=out, weights=weights, copy=args.weights, formats=tuple(dict.fromkeys(args.format or ())), seed=seed)
    for kind, path in written.items():
        print(f"{kind}: {path}")


def cmd_report(args: argparse.Namespace) -> int:
    from particle_nas.results import open_run, write_run_outputs

    run_dir = Path(args.run)
    study = open_run(run_dir, study_name=args.study)
    outputs = write_run_outputs(study, run_dir, pick=args.pick)
    print(f"wrote {outputs.trials_csv}, {outputs.pareto_html}, {outputs.dashboard_html}, {outputs.best_yaml}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from particle_nas.finetune import cmd_finetune as run_finetune

    return run_finetune(args)


def cmd_predict(args: argparse.Namespace) -> int:
    from particle_nas.exit_codes import EXIT_NONE_PREDICTED, EXIT_SOME_SKIPPED
    from particle_nas.results import Predictor, PredictSettings, video_paths, write_predictions

    settings = PredictSettings(views=args.views, crops=args.crops, top_k=args.top_k, min_frames=args.min_frames, threads=args.threads)
    predictor = Predictor.load(args.model, runtime=args.runtime, classes=args.classes, settings=settings)
    paths = video_paths(args.videos)
    if not paths:
        raise ValueError(f"--videos must name at least one video, but {' '.join(args.videos)} holds none.")
    print(f"particle-nas: predict {len(paths)} videos with {args.model} ({predictor.runtime}, clip {'x'.join(map(str, predictor.clip))}, {settings.views} views x {settings.crops} crops)", file=sys.stderr)
    run = predictor.predict_videos(paths, progress=not args.no_progress)
    for p in run.predictions:
        print(f"{p.video}: " + ", ".join(f"{label} {prob:.3f}" for label, prob in zip(p.labels, p.probabilities)))
    written = write_predictions(run, predictor, csv_path=args.csv, json_path=args.json)
    print(
        f"{len(run.predictions)} videos predicted in {run.seconds:.2f} s ({run.videos_per_s:.2f} videos/s, {run.clips_per_s:.2f} clips/s)"
        + (f"; {len(run.skipped)} skipped: {', '.join(video for video, _ in run.skipped)}" if run.skipped else "")
        + (f" -> {', '.join(map(str, written))}" if written else "")
    )
    if not run.predictions:
        return EXIT_NONE_PREDICTED
    return EXIT_SOME_SKIPPED if run.skipped else EXIT_OK


def cmd_presets(args: argparse.Namespace) -> int:
    from particle_nas.space import presets

    if args.show:
        import yaml

        entry = presets.preset(args.show)
        print(f"# {entry.name}: {entry.params:,} params, {entry.gflops} GFLOPs at {'x'.join(map(str, entry.flops_clip))} published ({entry.source})")
        if entry.note:
            print(f"# {entry.note}")
        print(yaml.safe_dump({"network": entry.spec.to_dict()}, sort_keys=False), end="")
        return 0
    header = f"{'name':<14} {'input':<12} {'params (published)':>19} {'params (counted)':>17} {'GFLOPs (published)':>19} {'GFLOPs (counted)':>17} {'diff':>7}  FLOPs at"
    print(header)
    for name in presets.names():
        entry = presets.preset(name)
        counted = entry.counted()
        c, t, h, w = entry.spec.input_shape
        diff = max(abs(counted.params / entry.params - 1), abs(counted.gflops / entry.gflops - 1))
        print(
            f"{name:<14} {f'{c}x{t}x{h}x{w}':<12} {entry.params:>19,} {counted.params:>17,} {entry.gflops:>19.3f} {counted.gflops:>17.3f} {diff:>7.2%}"
            f"  {'x'.join(map(str, entry.flops_clip))}"
        )
    print("FLOPs: multiply-adds of conv and linear layers per clip, counted from the spec (equal to fvcore on the built module),")
    print("at the input the figure was published for ('FLOPs at'; VMZ counted at 8/7 of its crops, see --show).")
    print("Sources: particle-nas presets --show NAME")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from particle_nas import __version__

    parser = argparse.ArgumentParser(prog="particle-nas", description="Neural-architecture search for spatiotemporal video particles.")
    parser.add_argument("--version", action="version", version=f"particle-nas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("search", help="run or resume a search from a YAML config")
    s.add_argument("config", help="search config (YAML), e.g. examples/quickstart.yaml")
    s.add_argument("--trials", type=int, help="finished trials the study should hold (overrides search.trials)")
    s.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    s.add_argument("--seed", type=int, help="seed for sampler, data and weights (overrides seed)")
    s.add_argument("--name", help="run name (overrides name); the run goes to OUTPUT_DIR/NAME")
    s.add_argument("--output-dir", help="where runs are written (overrides output_dir; default runs)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--sampler", help="auto | ehvi | gp | nsga2 | tpe | random | distinct | progressive (overrides search.sampler)")
    s.add_argument("--early-stopping", help="none | asha | mo-asha: stop trials that trail at each rung (overrides search.early_stopping)")
    s.add_argument("--backend", choices=("optuna", "ray"), help="optuna: local worker processes; ray: Ray Tune (overrides search.backend)")
    s.add_argument("--workers", type=int, help="optuna: worker processes on one study (default 1; with CUDA: search.trials_per_gpu per GPU); ray: most trials at once (default: one per CPU)")
    s.add_argument("--gpus", help="optuna: the GPUs the workers spread over, e.g. 0,1 (worker i on the i-th mod their number; default: every visible GPU); refused without CUDA")
    s.add_argument("--storage", help="a PostgreSQL URL for the study, shared by the workers of several machines (pip install 'particle-nas[postgres]'; docs/postgres.md); default: RUN/study.db, or RUN/study.journal with --workers > 1")
    s.add_argument("--address", help="ray: HOST:PORT of a running cluster (`ray start --head`); default: start a local Ray")
    s.set_defaults(func=cmd_search)

    rs = sub.add_parser("resume", help="continue an interrupted search (either backend), keeping every finished trial")
    rs.add_argument("run", help="run directory, e.g. runs/quickstart")
    rs.add_argument("--trials", type=int, help="raise the number of trials the study should hold")
    rs.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    rs.add_argument("--workers", type=int, help="worker processes / concurrent trials (default: as the run was started)")
    rs.add_argument("--address", help="ray: HOST:PORT of a running cluster (default: as the run was started)")
    rs.add_argument("--gpus", help="optuna: the GPUs the workers spread over, e.g. 0,1 (default: as the run was started)")
    rs.add_argument("--storage", help="the run's PostgreSQL URL with its password (run.json keeps the URL without it; or set PARTICLE_NAS_STORAGE, PGPASSWORD or ~/.pgpass: docs/postgres.md); another database is refused")
    rs.add_argument("--no-progress", action="store_true", help="no progress bar")
    rs.set_defaults(func=cmd_resume)

    c = sub.add_parser("cost", help="params, FLOPs and training memory of the network of a particle YAML (computed from the spec: nothing is built)")
    c.add_argument("particle", help="particle YAML (best.yaml, an export, or bare particle fields)")
    c.add_argument("--clip", type=int, nargs=3, metavar=("T", "H", "W"), help="input clip size (default: the file's network, else 8 32 32)")
    c.add_argument("--classes", type=int, help="number of classes of the head")
    c.add_argument("--batch-size", type=int, help="training batch of the memory estimate (default: train.batch_size's default, 16)")
    c.set_defaults(func=cmd_cost)

    e = sub.add_parser("export", help="write the particle YAML of a trial picked from a run")
    e.add_argument("run", help="run directory, e.g. runs/quickstart")
    e.add_argument("--pick", default="knee", help="knee | max-accuracy | min-flops | min-params | constraints like 'flops<=2e7' or 'accuracy>=0.9' (comma-joined)")
    e.add_argument("-o", "--output", help="output YAML (default RUN/export.yaml)")
    e.add_argument("--study", help="study name (default: the run directory's name)")
    e.add_argument("--weights", action="store_true", help="also write the trial's trained proxy weights (OUTPUT with .safetensors); only a safetensors file inside the run directory is copied")
    e.add_argument("--format", action="append", choices=("torchscript", "onnx"), help="also write the built network (trained weights when saved) as OUTPUT.pt / OUTPUT.onnx; repeatable")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="rewrite trials.csv, pareto.html, dashboard.html and best.yaml of a run")
    r.add_argument("run", help="run directory, e.g. runs/quickstart")
    r.add_argument("--pick", default="knee", help="pick rule for best.yaml")
    r.add_argument("--study", help="study name (default: the run directory's name)")
    r.set_defaults(func=cmd_report)

    f = sub.add_parser("finetune", help="train an exported network on a video folder (full, linear probe, adapters or BitFit), resumable, with a report")
    f.add_argument("network", nargs="?", help="network YAML: what `particle-nas export` writes, or a run's best.yaml (left out with --from)")
    f.add_argument("--from", dest="previous", metavar="PREVIOUS", help="continue a finished fine-tune run (runs/NAME) as a new round on --data: new videos, or more classes (the head grows); the report keeps every round and the previous validation set's top-1")
    f.add_argument("--data", required=True, help="data YAML: data (kind video_folder, root, split files, ...), train (epochs, batch_size, lr, ...), finetune (mode, adapter_reduction, quantize)")
    f.add_argument("--weights", help="initial weights (.safetensors, e.g. from `particle-nas export --weights`); default: the network's seeded initialization")
    f.add_argument("--inflate", action="store_true", help="--weights are those of the network's 2D form (every temporal kernel 1): inflate them by I3D's rule (each temporal kernel repeated over its frames, divided by their number)")
    f.add_argument("--mode", choices=("full", "linear", "adapters", "bitfit"), help="what trains (overrides finetune.mode; default full)")
    f.add_argument("--new-head", action="store_true", help="replace the head's last layer with a fresh one for the data's classes (the network has another number of classes)")
    f.add_argument("--epochs", type=int, help="training epochs (overrides train.epochs; may be raised to continue a finished run)")
    f.add_argument("--name", help="run name (default: the data file's name: or stem); output goes to OUTPUT_DIR/NAME/finetune")
    f.add_argument("--output-dir", help="where runs are written (default runs)")
    f.add_argument("--seed", type=int, help="seed of the fresh weights (head, adapters) and of the batch order (default 0)")
    f.add_argument("--quantize", choices=("none", "int8"), help="int8: after training, quantize the best epoch's model (ONNX Runtime, on the CPU), write model-int8.onnx and put its size, latency and accuracy in the report (overrides finetune.quantize; default none)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_finetune)

    pd = sub.add_parser("predict", help="top-k labels of new videos with a fine-tuned or exported network (torch, ONNX or int8 ONNX)")
    pd.add_argument("model", help="a fine-tune output (runs/NAME or runs/NAME/finetune), or an exported .onnx / .pt / .safetensors (its .yaml beside it)")
    pd.add_argument("--videos", nargs="+", required=True, metavar="PATH", help="video files, folders (searched recursively) or list files (.txt: one path per line, relative to the list)")
    pd.add_argument("--runtime", choices=("torch", "onnx", "int8"), help="torch (the weights), onnx (exported when loaded, or the .onnx given), int8 (the folder's model-int8.onnx); default: torch, onnx for a .onnx file")
    pd.add_argument("--views", type=int, default=1, help="temporal clips per video, uniformly spaced, their probabilities averaged (default 1)")
    pd.add_argument("--crops", type=int, default=1, choices=(1, 3), help="spatial crops per clip: 1 the whole frame, 3 start/centre/end of the longer side at 8/7 scale (default 1)")
    pd.add_argument("--top-k", type=int, default=5, help="labels per video (default 5)")
    pd.add_argument("--min-frames", type=int, default=1, help="skip videos with fewer frames as too short (default 1)")
    pd.add_argument("--classes", help="class names: a classInd.txt or one name per line (default: the fine-tune's classes, else class0, class1, ...)")
    pd.add_argument("--threads", type=int, help="torch / ONNX Runtime threads (default: torch's)")
    pd.add_argument("--csv", help="write the predictions as CSV (video, label_1, probability_1, ..., clips)")
    pd.add_argument("--json", help="write the predictions, the skipped videos and the throughput as JSON")
    pd.add_argument("--no-progress", action="store_true", help="no progress bar")
    pd.set_defaults(func=cmd_predict)

    pr = sub.add_parser("presets", help="reference networks (R3D, MC3, R(2+1)D, ...): published vs counted params and FLOPs")
    pr.add_argument("--show", metavar="NAME", help="print the preset's network spec as YAML, with its source")
    pr.set_defaults(func=cmd_presets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given, for "to continue: ..." hints
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("particle-nas: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as err:  # the search stopped with a reason of its own (a worker failed, a full disk): one line
        from particle_nas.search import SearchStopped

        if not isinstance(err, SearchStopped) or os.environ.get("PARTICLE_NAS_DEBUG"):
            raise
        print(f"particle-nas: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_STOPPED
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("PARTICLE_NAS_DEBUG"):
            raise
        message = " ".join(str(err).split())  # one line, whatever the source
        print(f"particle-nas: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
