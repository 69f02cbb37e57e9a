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

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def human(n: float, unit: str = "") -> str:
    """12345678 -> '12.35 M'."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip()


def _quiet_libraries() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("fvcore").setLevel(logging.ERROR)


def cmd_search(args: argparse.Namespace) -> int:
    from particle_nas.config import load_config
    from particle_nas.evaluators import ProxyEvaluator
    from particle_nas.results import open_run, write_run_outputs
    from particle_nas.search import run_search

    overrides = {"trials": args.trials, "timeout": args.timeout, "seed": args.seed, "name": args.name, "output_dir": args.output_dir}
    config = load_config(args.config, overrides=overrides)
    _quiet_libraries()
    run_dir = config.run_dir
    print(f"particle-nas: search {config.name!r}: {config.search.trials} trials, sampler {config.search.sampler}, seed {config.seed} -> {run_dir}/", file=sys.stderr)
    evaluator = ProxyEvaluator(data=config.data, train=config.train, cache_dir=run_dir, evaluators=config.evaluators)
    summary = run_search(
        run_dir=run_dir,
        name=config.name,
        space=config.space,
        network=config.network,
        evaluator=evaluator,
        settings=config.search,
        seed=config.seed,
        fingerprint=config.fingerprint(),
        config=config.raw,
        progress=not args.no_progress,
    )
    resume_hint = f"particle-nas search {args.config}" + (f" --name {config.name}" if args.name else "")
    study = open_run(run_dir, study_name=config.name)
    if summary.complete:
        outputs = write_run_outputs(study, run_dir, pick=config.search.export)
        print(f"wrote {outputs.trials_csv}, {outputs.pareto_html}, {outputs.best_yaml}")
        print(f"best.yaml: trial {outputs.chosen} by {config.search.export!r}; Pareto front: {outputs.n_pareto} of {outputs.n_complete} complete trials")
    print(
        f"{summary.finished}/{summary.target} trials finished ({summary.complete} complete, {summary.failed} failed; "
        f"{summary.new} new this run, {summary.reused} reused identical particles)"
    )
    print(f"optuna-dashboard {summary.storage}")
    if summary.interrupted:
        print(f"particle-nas: interrupted; completed trials are saved. To continue: {resume_hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if summary.timed_out:
        print(f"particle-nas: timeout reached; to add the missing trials: {resume_hint}", file=sys.stderr)
    if summary.complete == 0:
        print("particle-nas: error: no trial completed; see fail_reason in trials.csv", file=sys.stderr)
        return 1
    return 0


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
    from particle_nas.evaluators import count_cost
    from particle_nas.space import build_network

    network = _load_network_from_file(args.particle, args.clip, args.classes)
    cost = count_cost(build_network(network), input_shape=network.input_shape)
    p = network.particle
    c, t, h, w = network.input_shape
    print(f"particle: {p.factorization} / {p.wiring}, kernel {p.temporal_kernel}x{p.spatial_kernel}x{p.spatial_kernel}, prune {p.prune_ratio:g}")
    print(f"network:  widths {list(network.widths)}, depths {list(network.depths)}, input {c}x{t}x{h}x{w}, {network.num_classes} classes")
    print(f"params:   {cost.params:,} ({human(cost.params)})")
    print(f"FLOPs:    {cost.flops:,} ({human(cost.flops)}) multiply-adds per clip (conv + linear, counted by fvcore)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from particle_nas.results import open_run, particle_document, pick, trials_table, write_particle_yaml

    run_dir = Path(args.run)
    study = open_run(run_dir, study_name=args.study)
    table = trials_table(study)
    row = pick(table, args.pick)
    document = particle_document(row, run=str(run_dir), pick=args.pick)
    out = Path(args.output) if args.output else run_dir / "export.yaml"
    write_particle_yaml(document, out)
    src = document["source"]
    print(f"trial {src['trial']}: accuracy {src['accuracy']:.4f}, FLOPs {human(src['flops'])}, params {human(src['params'])} -> {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from particle_nas.results import open_run, write_run_outputs

    run_dir = Path(args.run)
    study = open_run(run_dir, study_name=args.study)
    outputs = write_run_outputs(study, run_dir, pick=args.pick)
    print(f"wrote {outputs.trials_csv}, {outputs.pareto_html}, {outputs.best_yaml}")
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
    s.set_defaults(func=cmd_search)

    c = sub.add_parser("cost", help="params and FLOPs of the network built from a particle YAML")
    c.add_argument("particle", help="particle YAML (best.yaml, an export, or bare particle fields)")
    c.add_argument("--clip", type=int, nargs=3, metavar=("T", "H", "W"), help="input clip size (default: the file's network, else 8 32 32)")
    c.add_argument("--classes", type=int, help="number of classes of the head")
    c.set_defaults(func=cmd_cost)

    e = sub.add_parser("export", help="write the particle YAML of a trial picked from a run")
    e.add_argument("run", help="run directory, e.g. runs/quickstart")
    e.add_argument("--pick", default="knee", help="knee | max-accuracy | min-flops | min-params | constraints like 'flops<=2e7' or 'accuracy>=0.9' (comma-joined)")
    e.add_argument("-o", "--output", help="output YAML (default RUN/export.yaml)")
    e.add_argument("--study", help="study name (default: the run directory's name)")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="rewrite trials.csv, pareto.html and best.yaml of a run")
    r.add_argument("run", help="run directory, e.g. runs/quickstart")
    r.add_argument("--pick", default="knee", help="pick rule for best.yaml")
    r.add_argument("--study", help="study name (default: the run directory's name)")
    r.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("particle-nas: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("PARTICLE_NAS_DEBUG"):
            raise
        message = " ".join(str(err).split())  # one line, whatever the source
        print(f"particle-nas: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
