from __future__ import annotations

import yaml

from particle_nas.cli import main
from particle_nas.space import NetworkSpec, presets


def test_presets_table_lists_published_and_counted(capsys) -> None:
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:] if line.split() and line.split()[0] in presets.names()}
    assert set(rows) == set(presets.names())
    r3d = rows["r3d_18"]
    assert r3d[1] == "3x16x112x112" and r3d[2] == r3d[3] == "33,371,472" and r3d[4] == "40.700" and r3d[5] == "40.697"
    assert r3d[-1] == "16x112x112"
    csn = rows["ir_csn_152"]
    assert csn[1] == "3x32x224x224" and csn[-1] == "32x256x256" and csn[4] == "96.700" and csn[5] == "96.713"
    s3d = rows["s3d"]  # torchvision's S3D: trained on 64 frames, its GFLOPS reproduced at 16
    assert s3d[1] == "3x64x224x224" and s3d[2] == s3d[3] == "8,320,048" and s3d[4:6] == ["17.980", "17.979"] and s3d[-1] == "16x224x224"


def test_presets_show_prints_a_loadable_spec(capsys) -> None:
    assert main(["presets", "--show", "mc3_18"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# mc3_18: 11,695,440 params") and "torchvision" in out.splitlines()[0]
    assert NetworkSpec.from_dict(yaml.safe_load(out)["network"]) == presets.get("mc3_18")


def test_presets_show_states_where_flops_were_counted(capsys) -> None:
    assert main(["presets", "--show", "ip_csn_152"]) == 0
    head = capsys.readouterr().out.splitlines()[:2]
    assert "108.8 GFLOPs at 32x256x256" in head[0] and "8/7" in head[1]
    assert main(["presets", "--show", "s3d"]) == 0
    head = capsys.readouterr().out.splitlines()[:2]
    assert "17.98 GFLOPs at 16x224x224" in head[0] and "S3D_Weights" in head[0] and "not the S3D paper's" in head[1]


def test_unknown_preset_is_one_line(capsys) -> None:
    assert main(["presets", "--show", "c3d_xl"]) == 2
    assert capsys.readouterr().err == "particle-nas: error: preset must be one of " + str(list(presets.names())) + ", but got 'c3d_xl'.\n"
