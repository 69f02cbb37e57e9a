"""Search configs: one YAML file, read with a safe loader, validated section by section.

Every problem becomes one ``ConfigError`` line naming the file, the field (as a
YAML path such as ``network.widths[1]``), the rule and the value received.
Command-line values take one path: ``apply_overrides`` writes them into the
document, which is then validated once, as if the file had said so.

The helpers a document of another command reads with (``particle-nas finetune``'s
data file) are public: ``check_sections``, ``apply_overrides``, ``run_fields``,
``section_values``, ``build_section``, ``config_error`` and ``to_plain``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from particle_nas.evaluators import EvaluatorSettings, ProxyEvaluator, ReplayEvaluator, SyntheticConfig, TrainConfig, VideoFolderConfig, VideoPretextConfig, check_replay, load_table, precision_policy, resolve_device
from particle_nas.search import RESUMABLE, SearchSettings
from particle_nas.space import BASELINES, NetworkSpec, SearchSpace, SpecError, read_yaml

SECTIONS: tuple[str, ...] = ("name", "seed", "output_dir", "search", "space", "network", "data", "train", "evaluators")
# data.kind -> the config class of that kind of task.
DATA_KINDS: dict[str, type] = {"synthetic": SyntheticConfig, "video_folder": VideoFolderConfig, "video_pretext": VideoPretextConfig}
# Network fields that follow from the data, and so may not be set under network:.
_DERIVED_NETWORK_FIELDS = {"clip": "data.clip", "num_classes": "data.num_classes", "in_channels": "data.channels", "particle": "space"}
# Train fields that may change when a run is resumed (a run may continue on another GPU).
_TRAIN_RESUMABLE: tuple[str, ...] = ("device",)
# A dataclass's field (as its SpecError names it) -> the document's path to it (the search config's, or a fine-tuning data file's).
_PREFIXES = {
    "NetworkSpec.": "network.", "TrainConfig.": "train.", "SyntheticConfig.": "data.", "ParticleSpec.": "space.",
    "EvaluatorSettings.": "evaluators.", "VideoFolderConfig.": "data.", "FineTuneSettings.": "finetune.",
    "VideoPretextConfig.": "data.",
}  # fmt: skip
# Command-line flags -> the document path each overrides (apply_overrides); name, seed and output_dir are their own paths.
OVERRIDES: dict[str, str] = {key: f"search.{key}" for key in ("trials", "timeout", "sampler", "early_stopping", "backend")}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Fields added to a section's dataclass after studies were made with it: left out of the search
# fingerprint while at their default, so a study made before them still resumes (as the evaluators
# section, and space's _OMIT_WHEN_DEFAULT for particle and network fields). Add a new field here.
FINGERPRINT_ADDED_LATER: dict[type, frozenset[str]] = {
    VideoFolderConfig: frozenset({"class_index"}),  # with particle-nas finetune (UCF101's classInd.txt)
    TrainConfig: frozenset({"precision", "deterministic", "init_from"}),  # with GPU training; with inflation
    EvaluatorSettings: frozenset({"replay"}),  # with ParticleBench's replayed searches
    SearchSettings: frozenset({"grace_epochs", "reduction_factor", "baselines"}),  # with multi-objective early stopping; with baselines
}


class ConfigError(ValueError):
    """A config file broke a rule; the message is one line that starts with the file."""


@dataclass(frozen=True)
class RunConfig:
    """A validated search config."""

    name: str  # run name; the study and the run directory are named after it
    output_dir: Path  # runs are written to output_dir / name
    seed: int  # seeds the sampler, the data, the weights and the data order
    search: SearchSettings
    space: SearchSpace
    network: NetworkSpec  # the proxy network; its particle is replaced by each trial's
    data: SyntheticConfig | VideoFolderConfig | VideoPretextConfig  # data.kind: synthetic (default), video_folder or video_pretext (label-free)
    train: TrainConfig
    raw: dict  # the document as read (with command-line overrides applied)
    source: str = "<config>"
    evaluators: EvaluatorSettings = dataclasses.field(default_factory=EvaluatorSettings)  # which scores each trial gets

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name

    def fingerprint(self) -> dict[str, Any]:
        """Everything that decides trial results; a resumed study must match it."""
        return {
            "seed": self.seed,
            "search": {k: v for k, v in to_plain(self.search).items() if k not in RESUMABLE},
            "space": self.space.to_dict(),
            "network": self.network.to_dict(),
            "data": to_plain(self.data),
            "train": {k: v for k, v in to_plain(self.train).items() if k not in _TRAIN_RESUMABLE},
            **({"evaluators": to_plain(self.evaluators)} if self.evaluators != EvaluatorSettings() else {}),
        }


def to_plain(obj: Any, *, added_later: Mapping[type, frozenset[str]] = FINGERPRINT_ADDED_LATER) -> Any:
    """``obj`` as JSON-able data (for fingerprints); the ``added_later`` fields of a dataclass are left out while at their default."""
    if dataclasses.is_dataclass(obj):
        later = added_later.get(type(obj), frozenset())
        return {
            f.name: to_plain(getattr(obj, f.name), added_later=added_later)
            for f in dataclasses.fields(obj)
            if not (f.name in later and getattr(obj, f.name) == f.default)
        }
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, added_later=added_later) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def section_values(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The settings of section ``key`` of a document, as a new dict (``{}`` when left out); a SpecError when it is not a mapping."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(key, "must be a mapping of settings", value)
    return dict(value)


def build_section(cls: type, values: Mapping[str, Any], section: str) -> Any:
    """``cls(**values)``, the dataclass of a section; an unknown setting or a value of the wrong type is a SpecError naming ``section``."""
    known = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in known:
            raise SpecError(f"{section}.{key}", f"is not a setting; known settings are {known}", values[key])
    try:
        return cls(**values)
    except TypeError as err:  # e.g. a list where a number belongs, caught before the field check
        raise SpecError(section, f"has a value of the wrong type ({err})", dict(values)) from None


def config_error(source: str, err: SpecError) -> ConfigError:
    """The one-line ConfigError of ``err`` in the document ``source``, its field named as the document's path (``network.widths[1]``, not ``NetworkSpec.widths[1]``)."""
    field = err.field
    for prefix, section in _PREFIXES.items():
        if field.startswith(prefix):
            field = section + field[len(prefix) :]
    return ConfigError(f"{source}: {err.relocated(field)}")


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the document ``raw`` with every override that is not None written at its place: command-line values win over the file.

    A key is a document path (``name``, ``train.epochs``) or a flag's name from ``OVERRIDES``
    (``trials`` is ``search.trials``). The result is validated like any document, so a value
    given on the command line obeys the same rules, in the same words, as one written in the file.
    """
    raw = copy.deepcopy(dict(raw))
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, field = OVERRIDES.get(key, key).rpartition(".")
        if section:
            raw[section] = {**section_values(raw, section), field: value}
        else:
            raw[field] = value
    return raw


def parse_config(raw: Any, *, source: str = "<config>", overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Validate a config document (a mapping as read from YAML), with ``overrides`` applied first (see ``apply_overrides``).

    ``RunConfig.raw`` is the document as overridden: stored on the study, it means the same run when resumed.
    """
    try:
        return _parse(raw, source=source, overrides=overrides or {})
    except SpecError as err:
        raise config_error(source, err) from None


def load_config(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read and validate a YAML search config (see ``parse_config``)."""
    try:
        raw = read_yaml(path, what="config file")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return parse_config(raw, source=os.fspath(path), overrides=overrides)


def run_fields(raw: Mapping[str, Any], *, default_name: str) -> tuple[str, int, str]:
    """``name``, ``seed`` and ``output_dir`` of a document (a search config, or a fine-tuning data file), checked."""
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError("name", "must be 1-128 letters, digits, '.', '_' or '-' (it names the run directory)", name)
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise SpecError("seed", "must be an integer in [0, 2**32)", seed)
    output_dir = raw.get("output_dir", "runs")
    if not isinstance(output_dir, str) or not output_dir:
        raise SpecError("output_dir", "must be a directory path", output_dir)
    return name, seed, output_dir


def check_sections(raw: Any, sections: tuple[str, ...]) -> None:
    """A SpecError unless the document ``raw`` is a mapping whose keys are all among ``sections``."""
    if not isinstance(raw, Mapping):
        raise SpecError("document", "must be a mapping with sections " + ", ".join(sections), raw)
    for key in raw:
        if key not in sections:
            raise SpecError(str(key), f"is not a section; sections are {list(sections)}", raw[key])


def _replay_table(path: str):
    try:
        return load_table(path)
    except ValueError as err:
        raise SpecError("evaluators.replay", f"must name a readable table ({' '.join(str(err).split())})", path) from None


def make_evaluator(config: RunConfig, *, cache_dir: Path, progress: bool = True) -> ProxyEvaluator | ReplayEvaluator:
    """What scores each trial of ``config``: the proxy trainer, or with ``evaluators.replay`` the table's records.

    ``progress``: whether decoding a video folder into its cache shows a bar (the search's own bar is the engine's).
    """
    if config.evaluators.replay is not None:
        return ReplayEvaluator(table=_replay_table(config.evaluators.replay), epochs=config.train.epochs)
    return ProxyEvaluator(data=config.data, train=config.train, cache_dir=cache_dir, evaluators=config.evaluators, progress=progress)


def _parse(raw: Any, *, source: str, overrides: Mapping[str, Any]) -> RunConfig:
    if raw is None:
        raw = {}
    if isinstance(raw, Mapping):
        raw = apply_overrides(raw, overrides)
    check_sections(raw, SECTIONS)  # the document as overridden: a flag obeys the file's rules
    name, seed, output_dir = run_fields(raw, default_name=Path(source).stem if source != "<config>" else "run")
    search = build_section(SearchSettings, section_values(raw, "search"), "search")
    space = SearchSpace.from_dict(raw.get("space"))
    data, train = _data_and_train(raw, seed)
    network = _network(raw, space=space, data=data)
    evaluators = build_section(EvaluatorSettings, section_values(raw, "evaluators"), "evaluators")
    if evaluators.replay is not None:
        _check_replay(evaluators.replay, search=search, space=space, network=network, data=data, train=train)
    _check_outputs(search, evaluators)
    return RunConfig(
        name=name,
        output_dir=Path(output_dir),
        seed=seed,
        search=search,
        space=space,
        network=network,
        data=data,
        train=train,
        raw=raw,
        source=source,
        evaluators=evaluators,
    )


def _data_and_train(raw: Mapping[str, Any], seed: int) -> tuple[SyntheticConfig | VideoFolderConfig | VideoPretextConfig, TrainConfig]:
    """The data and train sections (each seeded by ``seed`` unless set), and the device the training asks for, checked."""
    data_values = section_values(raw, "data")
    data_values.setdefault("seed", seed)
    kind = data_values.pop("kind", "synthetic")
    if kind not in DATA_KINDS:
        raise SpecError("data.kind", f"must be one of {tuple(DATA_KINDS)}", kind)
    data = build_section(DATA_KINDS[kind], data_values, "data")
    train_values = section_values(raw, "train")
    train_values.setdefault("seed", seed)
    train = build_section(TrainConfig, train_values, "train")
    device = resolve_device(train.device, field="train.device")  # cuda asked on a machine without it: one line, before any trial
    precision_policy(device.type, train.precision, True, field="train.precision")  # fp16 on the CPU; bf16 support is asked at the first trial (it would start CUDA here)
    return data, train


def _network(raw: Mapping[str, Any], *, space: SearchSpace, data: SyntheticConfig | VideoFolderConfig | VideoPretextConfig) -> NetworkSpec:
    """The proxy network: the network section, with the fields the data sets."""
    network_values = section_values(raw, "network")
    for key, owner in _DERIVED_NETWORK_FIELDS.items():
        if key in network_values:
            raise SpecError(f"network.{key}", f"is set by {owner}, not under network", network_values[key])
    network_values.update(clip=tuple(data.clip), num_classes=data.num_classes, in_channels=data.channels)
    network = build_section(NetworkSpec, network_values, "network")
    wirings = space.axis("wiring")
    if wirings is not None and "inception" in wirings.values() and min(network.widths) < 4:
        raise SpecError("network.widths", "must all be >= 4 when space.wiring includes 'inception' (one channel for each of its branches)", list(network.widths))
    return network


def _check_replay(path: str, *, search: SearchSettings, space: SearchSpace, network: NetworkSpec, data: Any, train: TrainConfig) -> None:
    """``evaluators.replay``: the table holds this space, network, data and training, and every baseline's particle."""
    table = _replay_table(path)
    check_replay(table, space=space, network=network, data=data, train=train)
    outside = [name for name in search.baseline_names if table.row(BASELINES[name].particle) is None]
    if outside:  # a baseline the table does not hold would fail at its trial: refuse it before the first
        inside = [name for name in search.baseline_names if name not in outside]
        raise SpecError(
            "search.baselines",
            f"must name only baselines whose particle the replayed table holds ({outside} are outside its space): use false, or {inside}",
            search.baselines,
        )


def _check_outputs(search: SearchSettings, evaluators: EvaluatorSettings) -> None:
    """Every objective and constraint is on a number the enabled evaluators report."""
    outputs = evaluators.outputs
    for i, objective in enumerate(search.objectives):
        if objective not in outputs:
            raise SpecError(f"search.objectives[{i}]", f"is not reported by the enabled evaluators (they report {list(outputs)}; enable it under evaluators:)", objective)
    for i, constraint in enumerate(search.parsed_constraints):
        if constraint.name not in outputs:
            raise SpecError(f"search.constraints[{i}]", f"is on a number the enabled evaluators do not report (they report {list(outputs)})", search.constraints[i])
