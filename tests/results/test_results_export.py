from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from particle_nas.results import load_network, load_particle, particle_document, pick, trials_table, write_particle_yaml
from particle_nas.space import NetworkSpec, ParticleSpec, SpecError

from results_study import NETWORK, PARTICLES


@pytest.fixture(scope="module")
def table(study) -> pd.DataFrame:
    return trials_table(study)


@pytest.mark.parametrize("number", [0, 1, 2, 3, 4, 5])
def test_round_trip_gives_equal_specs(table, tmp_path, number):
    row = table.set_index("number", drop=False).loc[number]
    doc = particle_document(row, run="demo", pick="knee")
    path = write_particle_yaml(doc, tmp_path / "best.yaml")
    particle = PARTICLES[number % len(PARTICLES)]
    assert load_particle(path) == particle
    assert load_network(path) == NETWORK.replace(particle=particle)
    assert [p.name for p in tmp_path.iterdir()] == ["best.yaml"]


def test_document_shape(table):
    doc = particle_document(pick(table, "knee"), run="demo", pick="knee")
    assert list(doc) == ["particle", "network", "source"]
    assert doc["particle"] == PARTICLES[3].to_dict()
    assert doc["network"] == NETWORK.replace(particle=PARTICLES[3]).to_dict()
    assert doc["source"] == {"run": "demo", "trial": 3, "pick": "knee", "accuracy": 0.8, "flops": 4_000_000, "params": 12_000}
    assert type(doc["source"]["flops"]) is int and type(doc["particle"]["temporal_kernel"]) is int


def test_file_has_header_and_writes_the_particle_once(table, tmp_path):
    doc = particle_document(pick(table, "knee"), run="demo", pick="knee")
    text = write_particle_yaml(doc, tmp_path / "best.yaml").read_text()
    assert text.startswith("# particle-nas particle picked from run 'demo', trial 3 (rule 'knee').\n")
    assert f"load_particle({str(tmp_path / 'best.yaml')!r})" in text
    assert "particle: &particle\n" in text and "  particle: *particle\n" in text
    assert "widths: [16, 24, 48]" in text
    assert text.count("factorization:") == 1
    loaded = yaml.safe_load(text)
    assert loaded["network"]["particle"] == loaded["particle"] == PARTICLES[3].to_dict()
    assert loaded["source"]["trial"] == 3


def test_document_from_a_csv_row(table, tmp_path):
    table.to_csv(tmp_path / "trials.csv", index=False)
    row = pd.read_csv(tmp_path / "trials.csv").iloc[1]
    assert ParticleSpec.from_dict(particle_document(row, run="r", pick="min-flops")["particle"]) == PARTICLES[1]


def test_document_without_network_needs_a_default(tmp_path):
    row = {"number": 7, "accuracy": 0.5, "flops": 10, "params": 3, **PARTICLES[2].to_dict()}
    doc = particle_document(row, run="r", pick="knee")
    assert "network" not in doc
    path = write_particle_yaml(doc, tmp_path / "p.yaml")
    assert load_particle(path) == PARTICLES[2]
    with pytest.raises(ValueError, match=r"p.yaml: network must be a section of the file when no default network is given, but got sections \['particle', 'source'\]"):
        load_network(path)
    assert load_network(path, default=NETWORK) == NETWORK.replace(particle=PARTICLES[2])


def test_document_without_particle():
    with pytest.raises(ValueError, match="must carry a particle.*trial 4"):
        particle_document({"number": 4}, run="r", pick="knee")


def test_bare_mapping(tmp_path):
    path = tmp_path / "hand.yaml"
    path.write_text("factorization: full\nwiring: plain\ntemporal_kernel: 7\n")
    assert load_particle(path) == ParticleSpec(factorization="full", wiring="plain", temporal_kernel=7)
    assert load_network(path, default=NetworkSpec()).particle.temporal_kernel == 7


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_bad_field_is_one_line(tmp_path):
    path = write(tmp_path, "particle:\n  factorization: full\n  temporal_kernel: 4\n")
    with pytest.raises(ValueError) as err:
        load_particle(path)
    assert one_line(err) == f"{path}: particle.temporal_kernel must be one of (1, 3, 5, 7), but got 4."
    assert isinstance(err.value, SpecError) and err.value.value == 4


def test_bad_fields_elsewhere(tmp_path):
    with pytest.raises(ValueError) as err:
        load_particle(write(tmp_path, "temporal_kernel: 4\n"))
    assert one_line(err).endswith("bad.yaml: temporal_kernel must be one of (1, 3, 5, 7), but got 4.")
    with pytest.raises(ValueError) as err:
        load_particle(write(tmp_path, "particle:\n  kernel: 3\n"))
    assert "bad.yaml: particle.kernel is not a field; known fields are" in one_line(err)
    with pytest.raises(ValueError) as err:
        load_particle(write(tmp_path, "particle: [1, 2]\n"))
    assert one_line(err).endswith("bad.yaml: particle must be a mapping of field names to values, but got [1, 2].")
    with pytest.raises(ValueError) as err:
        load_network(write(tmp_path, "particle: {}\nnetwork:\n  widths: [16, 0]\n  depths: [1, 1]\n  temporal_strides: [1, 1]\n  spatial_strides: [1, 2]\n"))
    assert one_line(err).endswith("bad.yaml: network.widths[1] must be in [1, 8192], but got 0.")
    with pytest.raises(ValueError) as err:
        load_network(write(tmp_path, "particle: {}\nnetwork:\n  particle: {wiring: plain}\n"))
    assert "bad.yaml: network.particle must match the particle section (or be left out), but got {" in one_line(err)
    with pytest.raises(ValueError) as err:
        load_network(write(tmp_path, "particle: {}\nnetwork:\n  particle: {spatial_kernel: 2}\n"))
    assert one_line(err).endswith("bad.yaml: network.particle.spatial_kernel must be one of (1, 3, 5, 7), but got 2.")


def test_yaml_syntax_error_is_one_line_with_line_number(tmp_path):
    path = write(tmp_path, "particle:\n  factorization: full\n  wiring: [plain\n  temporal_kernel: 3\n")
    with pytest.raises(ValueError) as err:
        load_particle(path)
    message = one_line(err)
    assert message.startswith(f"{path}:4:18: invalid YAML in particle file: ")
    path = write(tmp_path, "particle:\n  factorization: full\n wiring: plain\n")
    with pytest.raises(ValueError, match=r"bad.yaml:3:2: invalid YAML in particle file: ") as err:
        load_particle(path)
    one_line(err)


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"bad.yaml: the file must hold a mapping .*but got an empty file"):
        load_particle(write(tmp_path, ""))
    with pytest.raises(ValueError, match=r"bad.yaml: the file must hold a mapping .*but got list \[1, 2\]"):
        load_particle(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ValueError, match=r"nope.yaml: no such particle file"):
        load_particle(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match=r"bad.yaml: particle must be a section of the file .*but got sections \['source'\]"):
        load_particle(write(tmp_path, "source: {run: x}\n"))


def test_top_level_load_particle_and_build(table, tmp_path):
    import torch

    import particle_nas

    row = table.loc[table["number"] == 2].iloc[0]
    path = write_particle_yaml(particle_document(row, run="demo", pick="knee"), tmp_path / "p.yaml")
    particle = particle_nas.load_particle(path)
    assert particle == PARTICLES[2]
    network = particle_nas.load_network(path)
    model = particle_nas.build_network(network, seed=0).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, *network.input_shape))
    assert out.shape == (2, network.num_classes) and torch.isfinite(out).all()


def test_inception_lists_survive_a_csv_row(tmp_path):
    """Inception's list fields are JSON cells in the table; a CSV row gives the same particle back."""
    particle = ParticleSpec(factorization="full", wiring="inception", branch_fractions=(0.4, 0.3, 0.2, 0.1), reduce_fractions=(1.0, 0.25))
    row = {"branch_widths": "[]", **{k: json.dumps(v) if isinstance(v, list) else v for k, v in particle.to_dict().items()}}
    pd.DataFrame([{"number": 0, **row}]).to_csv(tmp_path / "t.csv", index=False)
    loaded = pd.read_csv(tmp_path / "t.csv").iloc[0]
    assert ParticleSpec.from_dict(particle_document(loaded, run="r", pick="knee")["particle"]) == particle
    with pytest.raises(ValueError, match=r"the row's branch_fractions must be a JSON list, but parsing '\(0.4' failed"):
        particle_document({**row, "branch_fractions": "(0.4"}, run="r", pick="knee")
