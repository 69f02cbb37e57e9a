"""Tabular benchmarks: every particle of a fixed space trained once, and an evaluator that replays them.

A table (``bench/particlebench.py generate`` writes one) is gzip-compressed JSON
lines. The first line is the header: the space, its hash, the proxy network,
data and training recipe, the seeds and the command that made it. Every other
line is one (particle, seed) trained with that recipe: per-epoch validation
accuracy, FLOPs, params, CPU latency, seconds per epoch and the machine.
Each line is its own gzip member, so a generator appends a row as soon as it
finishes and a file cut short loses at most its last row.

``ReplayEvaluator`` answers ``evaluate(spec, seed=..., on_epoch=...)`` from a
table in microseconds, so a search engine and its samplers run on the table
exactly as they run on real training (same CLI, study, trials.csv,
dashboard), with the recorded training seconds as simulated time.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from particle_nas.space import NetworkSpec, ParticleSpec, SearchSpace, SpecError, check_int, network_fingerprint

from ._protocol import Evaluator
from ._train import TrialStopped

TABLE_FORMAT = "particlebench-1"
# Header fields that decide the table's numbers (a resumed generation must match them all).
RECIPE_KEYS: tuple[str, ...] = ("format", "space", "space_hash", "network", "data", "train", "epochs", "seeds")
# Fields every row holds.
ROW_KEYS: tuple[str, ...] = ("particle", "seed", "accuracy", "epoch_accuracy", "train_loss", "epoch_seconds", "wall_s", "flops", "params", "latency_ms", "machine")
# Settings that change how fast a network trains but not what it learns: a replay ignores them. The seeds are the
# table's own (a replay answers from its first seed, whatever the run's seed).
_IGNORED = {"data": ("seed",), "train": ("seed", "threads", "memory_format")}


def row_seconds_scaled(row: Mapping[str, Any], epochs: int | None = None) -> float:
    """A row's recorded seconds on the table's reference machine: of its first ``epochs`` epochs, or (None) of its whole evaluation.

    Rows timed on another machine carry ``time_scale`` (written by
    ``bench/particlebench.py calibrate`` from rows trained on both machines):
    their seconds times it are the reference machine's. Rows without it were
    timed there.
    """
    seconds = float(row["wall_s"]) if epochs is None else float(sum(row["epoch_seconds"][:epochs]))
    return seconds * float(row.get("time_scale", 1.0))


def canonical_networks(space: SearchSpace, network: NetworkSpec, *, known: Mapping[ParticleSpec, str] | None = None) -> dict[str, ParticleSpec]:
    """Every distinct network of a space with finite choices in ``network``: its fingerprint -> the first particle of ``space.grid()`` that builds it.

    Two particles are one network when their built networks are the same
    (``space.network_fingerprint``): ``full``/``inverted`` and ``csn_ir``/``inverted``,
    or a prune ratio that removes no channel and none. ``known``: fingerprints
    already computed (a table's rows), by particle.
    """
    if space.per_stage:
        raise SpecError("space.stages", "must be shared for a table (one particle per network)", "per_stage")
    known = known or {}
    first: dict[str, ParticleSpec] = {}
    for p in space.grid():
        first.setdefault(known.get(p) or network_fingerprint(network.replace(particle=p)), p)
    return first


def table_particles(space: SearchSpace, network: NetworkSpec) -> list[ParticleSpec]:
    """Every distinct network of a space with finite choices, as the first particle of ``space.grid()`` that builds it (deterministic)."""
    return list(canonical_networks(space, network).values())


def row_fingerprint(row: Mapping[str, Any], network: NetworkSpec) -> str:
    """The fingerprint of a row's network: written on the row (``fingerprint``), or computed from its particle in ``network``."""
    stored = row.get("fingerprint")
    return str(stored) if stored else network_fingerprint(network.replace(particle=ParticleSpec.from_dict(row["particle"])))


def space_hash(space: SearchSpace) -> str:
    """A short hash of the set of particles a space holds (the order of axes or values does not change it)."""
    records = sorted(json.dumps(p.to_dict(), sort_keys=True) for p in space.grid())
    text = ("per_stage\n" if space.per_stage else "") + "\n".join(records)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plain(obj: Any) -> Any:
    """A config dataclass as JSON-able data (tuples as lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ---------------------------------------------------------------- the file
def _member(obj: Mapping[str, Any]) -> bytes:
    return gzip.compress((json.dumps(obj, separators=(",", ":")) + "\n").encode(), mtime=0)


def read_lines(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], bool]:
    """The JSON objects of a table file, and whether its end was cut short (the complete lines before it are kept)."""
    data = Path(path).read_bytes()
    objects: list[dict[str, Any]] = []
    truncated = False
    rest = data
    while rest:
        inflate = zlib.decompressobj(wbits=31)
        try:
            chunk = inflate.decompress(rest)
        except zlib.error:
            truncated = True
            break
        if not inflate.eof:
            truncated = True
            break
        rest = inflate.unused_data
        for line in chunk.decode().splitlines():
            if line.strip():
                try:
                    objects.append(json.loads(line))
                except json.JSONDecodeError:
                    truncated = True
                    break
    return objects, truncated


def write_table(path: str | os.PathLike[str], header: Mapping[str, Any], rows: Iterable[Mapping[str, Any]] = ()) -> Path:
    """Write a whole table (header, then rows) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out:
        out.write(_member(header))
        for row in rows:
            out.write(_member(row))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return path


def append_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> None:
    """Append one row as its own gzip member, flushed to disk (one write: a Ctrl-C cannot split it)."""
    with open(path, "ab") as out:
        out.write(_member(row))
        out.flush()
        os.fsync(out.fileno())


def row_key(network: NetworkSpec, particle: ParticleSpec, seed: int) -> tuple[str, int]:
    """A row's identity: the fingerprint of the network ``particle`` builds in ``network``, and the seed."""
    return network_fingerprint(network.replace(particle=particle)), int(seed)


@dataclass(frozen=True)
class Table:
    """A loaded table: its header (``meta``) and rows, looked up by (network, seed).

    A network is named by its fingerprint (``space.network_fingerprint``): a
    particle that builds the same network as another (``csn_ir``/``inverted`` and
    ``full``/``inverted``) is answered by the row of the first of them in
    ``space.grid()`` order, the network's canonical row.
    """

    path: str
    meta: Mapping[str, Any]
    rows: tuple[Mapping[str, Any], ...]
    _index: dict[tuple[str, int], Mapping[str, Any]] = field(init=False, repr=False, compare=False)
    _fingerprints: dict[ParticleSpec, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        network = NetworkSpec.from_dict(self.meta["network"])
        order = {p: i for i, p in enumerate(SearchSpace.from_dict(self.meta["space"]).grid())}
        fingerprints: dict[ParticleSpec, str] = {}
        index: dict[tuple[str, int], Mapping[str, Any]] = {}
        rank: dict[tuple[str, int], int] = {}
        for row in self.rows:
            particle = ParticleSpec.from_dict(row["particle"])
            fingerprints[particle] = row_fingerprint(row, network)
            key, at = (fingerprints[particle], int(row["seed"])), order.get(particle, len(order))
            if key not in index or at < rank[key]:  # the canonical row: the network's first particle in grid order
                index[key], rank[key] = row, at
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_fingerprints", fingerprints)

    def fingerprint(self, particle: ParticleSpec) -> str:
        """The fingerprint of the network ``particle`` builds in the table's proxy network."""
        known = self._fingerprints.get(particle)
        return known if known is not None else network_fingerprint(self.network.replace(particle=particle))

    @property
    def epochs(self) -> int:
        """E: the training epochs of every row (accuracy recorded after each)."""
        return int(self.meta["epochs"])

    @property
    def seeds(self) -> tuple[int, ...]:
        """Training seeds: every particle has the first; a subset also has the others (to measure noise)."""
        return tuple(int(s) for s in self.meta["seeds"])

    @functools.cached_property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.meta["space"])

    @property
    def space_hash(self) -> str:
        return str(self.meta["space_hash"])

    @functools.cached_property
    def network(self) -> NetworkSpec:
        """The proxy network every particle was stacked into (its particle is a placeholder)."""
        return NetworkSpec.from_dict(self.meta["network"])

    def row(self, particle: ParticleSpec, seed: int | None = None) -> Mapping[str, Any] | None:
        """The row of ``particle`` trained with ``seed`` (default: the table's first seed), or None."""
        return self._index.get((self.fingerprint(particle), int(self.seeds[0] if seed is None else seed)))

    @functools.cached_property
    def particles(self) -> tuple[ParticleSpec, ...]:
        """The space's distinct networks (each as its canonical particle): the first seed's rows of a complete table."""
        return tuple(canonical_networks(self.space, self.network, known=self._fingerprints).values())

    @functools.cached_property
    def missing(self) -> tuple[ParticleSpec, ...]:
        """The space's particles without a row of the first seed yet (a generation still running): empty when complete."""
        return tuple(p for p in self.particles if self.row(p) is None)

    def noise(self) -> SeedNoise:
        """How much a row's accuracy moves with the training seed, from the particles trained with two seeds."""
        first, other = self.seeds[0], self.seeds[1:]
        pairs = [(row, twin) for (fp, seed), row in self._index.items() if seed == first for s in other if (twin := self._index.get((fp, s))) is not None]
        return SeedNoise.of(pairs)

    def frame(self) -> Any:
        """The rows as a pandas DataFrame: one column per particle field, the lists as lists."""
        import pandas as pd

        return pd.DataFrame([{**ParticleSpec.from_dict(r["particle"]).__dict__, **{k: v for k, v in r.items() if k != "particle"}} for r in self.rows])


@dataclass(frozen=True)
class SeedNoise:
    """Seed-to-seed differences of the particles a table trained with two seeds.

    ``std`` is one run's standard deviation, estimated from the paired
    differences d = acc(seed b) - acc(seed a) as sqrt(mean(d**2) / 2); ``epoch_std``
    the same after each of the E epochs. A retrained row is within the noise
    when it is within 3 ``std`` of its record.
    """

    pairs: int
    std: float
    mean_abs_difference: float
    max_abs_difference: float
    epoch_std: tuple[float, ...]

    @classmethod
    def of(cls, pairs: list[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> SeedNoise:
        if not pairs:
            return cls(pairs=0, std=float("nan"), mean_abs_difference=float("nan"), max_abs_difference=float("nan"), epoch_std=())
        diffs = [float(b["accuracy"]) - float(a["accuracy"]) for a, b in pairs]
        epochs = min(min(len(a["epoch_accuracy"]), len(b["epoch_accuracy"])) for a, b in pairs)
        per_epoch = [[float(b["epoch_accuracy"][e]) - float(a["epoch_accuracy"][e]) for a, b in pairs] for e in range(epochs)]

        def std(d: list[float]) -> float:
            return (sum(x * x for x in d) / len(d) / 2) ** 0.5

        return cls(
            pairs=len(pairs),
            std=std(diffs),
            mean_abs_difference=sum(abs(d) for d in diffs) / len(diffs),
            max_abs_difference=max(abs(d) for d in diffs),
            epoch_std=tuple(std(d) for d in per_epoch),
        )


def _check_row(row: Any, where: str) -> None:
    if not isinstance(row, dict) or any(k not in row for k in ROW_KEYS):
        missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
        raise ValueError(f"{where} must hold the fields {list(ROW_KEYS)}, but it lacks {missing}.")
    try:
        ParticleSpec.from_dict(row["particle"])
    except (SpecError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


@functools.lru_cache(maxsize=8)
def _load(path: str, _stamp: tuple[int, int]) -> Table:
    objects, truncated = read_lines(path)
    if truncated:
        raise ValueError(f"table {path} is cut short (its generation was interrupted): rerun the generate command to repair and finish it.")
    if not objects or objects[0].get("format") != TABLE_FORMAT:
        got = objects[0].get("format") if objects else None
        raise ValueError(f"table {path} must start with a {TABLE_FORMAT!r} header, but got format {got!r}.")
    header, rows = objects[0], objects[1:]
    missing = [k for k in RECIPE_KEYS if k not in header]
    if missing:
        raise ValueError(f"table {path}: the header lacks {missing}.")
    for i, row in enumerate(rows, start=2):
        _check_row(row, f"table {path} line {i}")
    return Table(path=path, meta=header, rows=tuple(rows))


def load_table(path: str | os.PathLike[str]) -> Table:
    """Read a table file (cached while the file is unchanged). Errors are one-line ValueErrors naming the file."""
    where = os.fspath(path)
    try:
        stat = os.stat(where)
    except FileNotFoundError:
        raise ValueError(f"{where}: no such table (bench/particlebench.py generate writes one; docs/particlebench.md)") from None
    return _load(where, (stat.st_mtime_ns, stat.st_size))


# ---------------------------------------------------------------- the replay
def _differences(table: Mapping[str, Any], config: Mapping[str, Any], ignored: tuple[str, ...] = ()) -> list[str]:
    keys = sorted((set(table) | set(config)) - set(ignored))
    return [f"{k}: table {table.get(k)!r} vs config {config.get(k)!r}" for k in keys if table.get(k) != config.get(k)]


def require_complete(table: Table, where: str = "ReplayEvaluator.table") -> None:
    """Refuse a table whose generation is unfinished: a replay must answer every particle of its space."""
    if table.missing:
        done = len(table.particles) - len(table.missing)
        raise SpecError(where, f"must name a complete table, but it holds {done} of its {len(table.particles)} particles (its generation is unfinished: rerun the command in its header to finish it)", table.path)


def check_replay(table: Table, *, space: SearchSpace, network: NetworkSpec, data: Any, train: Any, where: str = "evaluators.replay") -> None:
    """Refuse a config whose answers the table does not hold: another space, network, task or training recipe.

    The seeds are exempt (the replay answers from the table's first seed), and
    so are the settings that change speed only (``train.threads``, ``memory_format``).
    """
    mine = space_hash(space)
    if mine != table.space_hash:
        raise SpecError(where, f"must name a table of the config's space (the table's space hash is {table.space_hash}, {len(table.particles)} networks; the config's is {mine}; the replay answers only the table's space)", table.path)
    require_complete(table, where)
    placeholder = table.network.particle
    diffs = _differences(table.meta["network"], network.replace(particle=placeholder).to_dict())
    diffs += [f"data.{d}" for d in _differences(table.meta["data"], plain(data), _IGNORED["data"])]
    diffs += [f"train.{d}" for d in _differences(table.meta["train"], plain(train), _IGNORED["train"])]
    if diffs:
        raise SpecError(where, f"must name a table measured with the config's network, data and training ({'; '.join(diffs[:3])})", table.path)


@dataclass(frozen=True)
class ReplayEvaluator(Evaluator):
    """Answer trials from a table instead of training: ``evaluate`` has ProxyEvaluator's interface.

    ``epochs`` (default: the table's E) is the budget replayed: ``on_epoch`` is
    called with the recorded accuracy after each of the first ``epochs``
    epochs, and the answer is the accuracy after epoch ``epochs`` of the
    table's E-epoch schedule (with E: the full record, pruning and fine-tuning
    included). ``duration_s`` is simulated: the recorded wall seconds of those
    epochs (with E: of the whole evaluation, counting, building, pruning and
    fine-tuning included), on the table's reference machine (``row_seconds_scaled``). Every answer comes from the table's first seed.
    When ``on_epoch`` stops the trial (``TrialStopped`` after epoch k), the
    stop's record holds the costs and ``duration_s``: the recorded seconds of
    epochs 1..k only.
    """

    table: Table
    epochs: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.table, (str, os.PathLike)):
            object.__setattr__(self, "table", load_table(self.table))
        if not isinstance(self.table, Table):
            raise SpecError("ReplayEvaluator.table", "must be a Table or the path of one", self.table)
        if self.epochs is None:
            object.__setattr__(self, "epochs", self.table.epochs)
        check_int("ReplayEvaluator.epochs", self.epochs, low=1, high=self.table.epochs)
        require_complete(self.table)

    def for_clip(self, clip: tuple[int, int, int]) -> ReplayEvaluator | None:
        """Itself on the table's clip; None on any other (the table answers only its proxy network)."""
        return self if tuple(clip) == tuple(self.table.network.clip) else None

    def evaluate(self, spec: NetworkSpec, *, seed: int, on_epoch: Callable[[int, float], None] | None = None, weights_path: Path | None = None) -> dict[str, Any]:
        """The table's record of ``spec``'s particle; ``seed`` and ``weights_path`` are accepted for the interface (the table's first seed answers; nothing is trained, so no weights are saved)."""
        table = self.table
        if not isinstance(spec, NetworkSpec):
            raise TypeError(f"ReplayEvaluator.evaluate expects a NetworkSpec, but got {type(spec).__name__}.")
        particle = spec.particle
        if not isinstance(particle, ParticleSpec):
            raise ValueError(f"per-stage particles are not in table {table.path}: the replay answers only the table's space (one particle per network).")
        if spec.replace(particle=table.network.particle) != table.network:
            raise ValueError(f"the network of {particle.to_dict()} must be table {table.path}'s proxy network {table.meta['network']}, but got {spec.replace(particle=table.network.particle).to_dict()}.")
        row = table.row(particle)
        if row is None:
            raise ValueError(f"particle {particle.to_dict()} is not in table {table.path} (space hash {table.space_hash}); the replay answers only the table's space.")
        e = self.epochs
        accuracies = [float(a) for a in row["epoch_accuracy"]]
        record: dict[str, Any] = {"flops": int(row["flops"]), "params": int(row["params"]), "latency_ms": float(row["latency_ms"])}
        if on_epoch is not None:
            for epoch in range(1, e + 1):
                try:
                    on_epoch(epoch, accuracies[epoch - 1])
                except TrialStopped as stop:  # early stopping: simulated time of the epochs trained, up to this one
                    stop.record.update(record, duration_s=row_seconds_scaled(row, epoch), replay=True, replay_table=table.path)
                    raise
        if e == table.epochs:
            record.update(accuracy=float(row["accuracy"]), epoch_accuracy=accuracies, train_loss=list(row["train_loss"]), duration_s=row_seconds_scaled(row))
            if row.get("accuracy_before_prune") is not None:
                record["accuracy_before_prune"] = float(row["accuracy_before_prune"])
        else:
            record.update(accuracy=accuracies[e - 1], epoch_accuracy=accuracies[:e], train_loss=list(row["train_loss"][:e]), duration_s=row_seconds_scaled(row, e))
        record.update(replay=True, replay_table=table.path)
        return record
