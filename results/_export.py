"""Exporting one picked trial as a YAML file, and loading it back as specs.

A particle file looks like::

    # particle-nas particle ...   (comment header)
    particle: &particle
      factorization: r2plus1d
      ...
    network:
      particle: *particle        # a YAML alias: the particle is written once
      widths: [16, 32, 64]
      ...
    source: {run, trial, pick, accuracy, flops, params}

The loaders also accept a bare mapping of particle fields (a hand-written
file). Every problem is one ValueError line naming the file, the field and
the rule.
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from particle_nas.space import NetworkSpec, ParticleSpec, SpecError, particle_from_record, particle_to_record, read_yaml

from ._files import atomic_write
from ._table import PARTICLE_FIELDS

DOCUMENT_KEYS = frozenset({"particle", "network", "source"})


# ---------------------------------------------------------------- building the document
def _plain(value: Any) -> Any:
    """numpy / pandas scalars as plain Python values; NA and NaN as None."""
    if value is None:
        return None
    try:
        if value != value:  # NaN, NaT
            return None
    except (TypeError, ValueError):  # pandas NA refuses bool()
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _row_particle(row: Mapping[str, Any]) -> dict[str, Any] | None:
    defaults = ParticleSpec()
    values: dict[str, Any] = {}
    for name in PARTICLE_FIELDS:
        value = _plain(row.get(name))
        if value is None:
            continue
        if type(getattr(defaults, name)) is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # a CSV or a nullable column may hand back 3.0 for 3
        if isinstance(getattr(defaults, name), tuple) and isinstance(value, str):  # inception's list fields, written as JSON
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError(f"the row's {name} must be a JSON list, but parsing {value!r} failed: {err}.") from None
        values[name] = value
    return values or None


def _row_network(row: Mapping[str, Any]) -> dict[str, Any] | None:
    network = _plain(row.get("network"))
    if isinstance(network, str):
        try:
            network = json.loads(network)
        except json.JSONDecodeError as err:
            raise ValueError(f"the row's network must be NetworkSpec JSON, but parsing it failed: {err}.") from None
    return network if isinstance(network, dict) else None


def particle_document(row: Mapping[str, Any], *, run: str, pick: str) -> dict[str, Any]:
    """What ``best.yaml`` holds for one row of a ``trials_table`` (or any mapping with its columns).

    Returns ``{"particle": ..., "network": ..., "source": {"run", "trial",
    "pick", "accuracy", "flops", "params"}}`` with plain Python values. The
    particle comes from the row's particle columns (or, failing those, from its
    network); ``network`` is the row's NetworkSpec with that particle, and the
    two share one dict, so the YAML writes the particle once. ``network`` is
    left out when the row has none (``load_network`` then needs a default).
    Both are validated: a row whose specs break a rule raises SpecError.
    """
    particle = _row_particle(row)
    network = _row_network(row)
    stages = _plain(row.get("stage_particles"))
    if isinstance(stages, str):  # a per-stage trial: its particles, one per stage
        particle = json.loads(stages)
    if particle is None and network is not None and isinstance(network.get("particle"), dict):
        particle = network["particle"]
    if particle is None:
        raise ValueError(f"the row must carry a particle (its {', '.join(PARTICLE_FIELDS[:2])}, ... columns or a network), but got none for trial {_plain(row.get('number'))}.")
    spec = particle_from_record(particle)
    document: dict[str, Any] = {"particle": particle_to_record(spec)}
    if network is not None:
        network_dict = NetworkSpec.from_dict({**network, "particle": spec}).to_dict()
        network_dict["particle"] = document["particle"]  # shared: written once, as a YAML alias
        document["network"] = network_dict
    number, flops, params = (_plain(row.get(k)) for k in ("number", "flops", "params"))
    accuracy = _plain(row.get("accuracy"))
    document["source"] = {
        "run": str(run),
        "trial": None if number is None else int(number),
        "pick": str(pick),
        "accuracy": None if accuracy is None else float(accuracy),
        "flops": None if flops is None else int(flops),
        "params": None if params is None else int(params),
    }
    return document


# ---------------------------------------------------------------- writing
class _Dumper(yaml.SafeDumper):
    """SafeDumper with lists on one line and the shared particle anchored as ``&particle``."""

    def generate_anchor(self, node: Any) -> str:
        self._anchors_made = getattr(self, "_anchors_made", 0) + 1
        return "particle" if self._anchors_made == 1 else f"id{self._anchors_made:03d}"


_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))
_Dumper.add_representer(tuple, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", list(data), flow_style=True))


def _header(doc: Mapping[str, Any], path: Path) -> str:
    source = doc.get("source") if isinstance(doc.get("source"), Mapping) else {}
    origin = ""
    if source.get("run") is not None:
        origin = f" picked from run {source['run']!r}, trial {source.get('trial')} (rule {source.get('pick')!r})"
    lines = [
        f"particle-nas particle{origin}.",
        "The 'particle' section is the ParticleSpec; 'network' is the proxy NetworkSpec it was evaluated in",
        "('particle: *particle' there is a YAML alias of the section above); 'source' records where it came from.",
        "Load it with:",
        "  from particle_nas.results import load_particle, load_network",
        f"  particle = load_particle({os.fspath(path)!r})  # ParticleSpec",
        f"  network = load_network({os.fspath(path)!r})  # NetworkSpec",
    ]
    return "".join(f"# {line}\n" for line in lines)


def particle_yaml(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> str:
    """The text ``write_particle_yaml(doc, path)`` writes (``path`` only appears in the header)."""
    if not isinstance(doc, Mapping) or "particle" not in doc:
        raise ValueError(f"doc must be a mapping with a 'particle' section (see particle_document), but got {type(doc).__name__} with keys {sorted(doc) if isinstance(doc, Mapping) else []}.")
    body = yaml.dump(dict(doc), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return _header(doc, Path(path)) + body


def write_particle_yaml(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a ``particle_document`` as YAML with a comment header, atomically; returns the path."""
    path = Path(path)
    text = particle_yaml(doc, path)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------- loading
def _read(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    where = os.fspath(path)
    data = read_yaml(path, what="particle file")
    if not isinstance(data, dict):
        raise ValueError(f"{where}: the file must hold a mapping (a 'particle:' section or particle fields), but got {_describe(data)}.")
    return where, data


def _describe(value: Any) -> str:
    return "an empty file" if value is None else f"{type(value).__name__} {value!r}"[:120]


def _relocated(err: SpecError, where: str, prefix: str) -> SpecError:
    """``ParticleSpec.temporal_kernel`` -> ``best.yaml: particle.temporal_kernel``."""
    _, _, rest = err.field.partition(".")
    field = ".".join(part for part in (prefix, rest) if part) or "particle"
    return err.relocated(f"{where}: {field}")


def _particle(where: str, data: Any, prefix: str) -> ParticleSpec | tuple[ParticleSpec, ...]:
    try:
        return particle_from_record(data)  # a list: one particle per stage
    except SpecError as err:
        raise _relocated(err, where, prefix) from None


def _particle_section(where: str, data: dict[str, Any]) -> ParticleSpec | None:
    if not DOCUMENT_KEYS & data.keys():
        return _particle(where, data, "")  # a bare mapping of particle fields
    if "particle" in data:
        return _particle(where, data["particle"], "particle")
    network = data.get("network")
    if isinstance(network, dict) and "particle" in network:
        return _particle(where, network["particle"], "network.particle")
    return None


def load_particle(path: str | os.PathLike[str]) -> ParticleSpec:
    """The ParticleSpec of a particle file: its ``particle:`` section (else
    ``network.particle``), or the whole file when it is a bare mapping of
    particle fields. Errors are one line, e.g.
    ``best.yaml: particle.temporal_kernel must be one of (1, 3, 5, 7), but got 4.``
    """
    where, data = _read(path)
    return _require_particle(where, data)


def _require_particle(where: str, data: dict[str, Any]) -> ParticleSpec:
    particle = _particle_section(where, data)
    if particle is None:
        raise ValueError(f"{where}: particle must be a section of the file (or the file a bare mapping of particle fields), but got sections {sorted(map(str, data))}.")
    return particle


def load_network(path: str | os.PathLike[str], *, default: NetworkSpec | None = None) -> NetworkSpec:
    """The NetworkSpec of a particle file, carrying the file's particle.

    The ``network:`` section gives the network; when it repeats the particle
    (as exported files do, by alias) it must match the ``particle:`` section.
    A file without a network section (e.g. a bare particle mapping) gives
    ``default`` with the file's particle, or raises when ``default`` is None.
    """
    if default is not None and not isinstance(default, NetworkSpec):
        raise ValueError(f"default must be a NetworkSpec or None, but got {type(default).__name__}.")
    where, data = _read(path)
    particle = _require_particle(where, data)
    network = data.get("network") if DOCUMENT_KEYS & data.keys() else None
    if network is None:
        if default is None:
            raise ValueError(f"{where}: network must be a section of the file when no default network is given, but got sections {sorted(map(str, data))}.")
        return default.replace(particle=particle)
    if not isinstance(network, dict):
        raise SpecError(f"{where}: network", "must be a mapping of NetworkSpec fields", network)
    fields = dict(network)
    if "particle" in fields:
        own = _particle(where, fields.pop("particle"), "network.particle")
        if own != particle:
            raise SpecError(f"{where}: network.particle", "must match the particle section (or be left out)", particle_to_record(own))
    try:
        return NetworkSpec.from_dict({**fields, "particle": particle})
    except SpecError as err:
        raise _relocated(err, where, "network") from None
