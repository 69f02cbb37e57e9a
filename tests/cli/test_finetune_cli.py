"""particle-nas finetune through the real command line (in-process: main(argv)), on tiny generated UCF101-style videos."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import particle_nas
import particle_nas.evaluators
from particle_nas.evaluators import save_weights
from particle_nas.cli import main
from particle_nas.finetune import build_model, load_job
from particle_nas.space import NOT_INFLATABLE, NetworkSpec, ParticleSpec, as_2d, build_network, inflate, particle_to_record

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "finetune"))
from make_ucf_demo import make_ucf_tree  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from cli_tools import doc_commands, run_doc_commands  # noqa: E402

av = pytest.importorskip("av", reason="the fine-tuning tests need PyAV (pip install av)")



def data_yaml(root: Path, *, epochs: int = 2, extra: str = "") -> str:
    """A DATA.yaml for the tree under ``root`` (absolute paths) with a small train section."""
    lists = root / "ucfTrainTestlist"
    return (
        f"data:\n  kind: video_folder\n  root: {root / 'UCF-101'}\n  train_list: {lists / 'trainlist01.txt'}\n"
        f"  val_list: {lists / 'testlist01.txt'}\n  class_index: {lists / 'classInd.txt'}\n"
        f"train:\n  epochs: {epochs}\n  batch_size: 4\n  lr: 0.01\n  warmup_epochs: 0\n  threads: 1\n" + extra
    )


NETWORK = NetworkSpec(
    particle=ParticleSpec(factorization="csn_ir", wiring="residual", temporal_kernel=3),
    stem_channels=8,
    widths=(8, 16),
    depths=(1, 1),
    temporal_strides=(1, 1),
    spatial_strides=(1, 2),
    clip=(4, 16, 16),
    num_classes=3,
)


def write_network(path: Path, network: NetworkSpec = NETWORK) -> Path:
    fields = {k: v for k, v in network.to_dict().items() if k != "particle"}
    path.write_text(yaml.safe_dump({"particle": particle_to_record(network.particle), "network": fields}, sort_keys=False))
    return path


def write_weights(path: Path, network: NetworkSpec = NETWORK) -> Path:
    save_file({k: v.contiguous() for k, v in build_network(network, seed=5).state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    return make_ucf_tree(tmp_path_factory.mktemp("ucf"))


@pytest.fixture
def files(tmp_path: Path, ucf: Path) -> dict[str, Path]:
    data = tmp_path / "ucf.yaml"
    data.write_text(data_yaml(ucf, epochs=2))
    return {"network": write_network(tmp_path / "net.yaml"), "data": data, "runs": tmp_path / "runs"}


def finetune(files: dict[str, Path], *extra: str) -> list[str]:
    return ["finetune", str(files["network"]), "--data", str(files["data"]), "--output-dir", str(files["runs"]), "--no-progress", *extra]


def test_ctrl_c_then_the_same_command_continues_and_more_epochs_extend_the_run(files, monkeypatch, capsys) -> None:
    argv = finetune(files, "--mode", "adapters", "--weights", str(write_weights(files["runs"].parent / "w.safetensors")))
    real = particle_nas.evaluators.finetune

    def interrupted(*args, **kwargs):
        def stop(epoch: int, accuracy: float) -> None:
            raise KeyboardInterrupt

        return real(*args, **{**kwargs, "on_epoch": stop})

    monkeypatch.setattr(particle_nas.evaluators, "finetune", interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "the checkpoint after epoch 1 is kept. To continue: " + shlex.join(["particle-nas", *argv]) in err
    out = files["runs"] / "ucf" / "finetune"
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "best.safetensors").is_file() and not (out / "report.json").exists()

    monkeypatch.setattr(particle_nas.evaluators, "finetune", real)
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "continuing after epoch 1" in captured.err and "best epoch" in captured.out
    report = json.loads((out / "report.json").read_text())
    assert report["resumed_from"] == 1 and [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert report["mode"] == "adapters" and report["class_names"] == ["MoveDown", "MoveLeft", "MoveRight"]
    assert sum(map(sum, report["confusion"])) == report["data"]["val_videos"] == 3 and len(report["per_class"]) == 3
    assert report["params"]["trainable"] < report["params"]["total"] and report["params"]["ratio"] == pytest.approx(report["params"]["trainable"] / report["params"]["total"])
    assert report["flops"]["trained_model"] > report["flops"]["network"] > 0 and report["latency_ms_cpu"] > 0
    assert report["top1"] == pytest.approx(max(e["val_top1"] for e in report["epochs"]))  # the best epoch's weights were evaluated
    assert report["quantization"] is None and 'id="quantization"' in (out / "report.html").read_text()

    assert main(argv + ["--epochs", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["resumed_from"] == 2 and len(report["epochs"]) == 3


def test_every_mode_runs_from_the_command_line(files, capsys) -> None:
    ratios = {}
    for mode in ("full", "linear", "bitfit"):
        assert main(finetune(files, "--mode", mode, "--epochs", "1", "--name", mode)) == 0
        ratios[mode] = json.loads((files["runs"] / mode / "finetune" / "report.json").read_text())["params"]["ratio"]
    assert ratios["full"] == 1.0 and ratios["linear"] < ratios["bitfit"] < 1.0


def test_new_head_fine_tunes_weights_of_another_number_of_classes(files, tmp_path: Path, capsys) -> None:
    eight = NETWORK.replace(num_classes=8)  # e.g. a proxy of the 8 synthetic classes, on 3 classes of videos
    network, weights = write_network(tmp_path / "eight.yaml", eight), write_weights(tmp_path / "eight.safetensors", eight)
    argv = ["finetune", str(network), "--data", str(files["data"]), "--weights", str(weights), "--mode", "adapters", "--output-dir", str(files["runs"]), "--no-progress"]
    assert main(argv) == 2 and "the head must be replaced (--new-head)" in capsys.readouterr().err and not files["runs"].exists()
    assert main(argv + ["--new-head", "--epochs", "1"]) == 0
    out = files["runs"] / "ucf" / "finetune"
    report = json.loads((out / "report.json").read_text())
    assert report["new_head"] is True and report["network"]["num_classes"] == 3 and len(report["confusion"]) == 3
    kept, given = load_file(str(out / "best.safetensors")), load_file(str(weights))
    assert kept["head.3.weight"].shape == (3, 16) and given["head.3.weight"].shape == (8, 16)
    frozen = [k for k in given if not k.startswith("head.")]
    assert frozen and all(torch.equal(kept[k], given[k]) for k in frozen)  # loaded, and frozen in adapters mode


def _bad_inputs(tmp_path: Path, ucf: Path, files: dict[str, Path]) -> dict[str, tuple[list[str], str]]:
    for cls in ("a", "b"):
        (tmp_path / "novideo" / cls).mkdir(parents=True)
    (tmp_path / "empty.yaml").write_text(f"data:\n  kind: video_folder\n  root: {tmp_path / 'novideo'}\n")
    partial = tmp_path / "test2.txt"
    partial.write_text("MoveDown/v_MoveDown_g04_c01.avi\nMoveLeft/v_MoveLeft_g04_c01.avi\n")
    (tmp_path / "noclass.yaml").write_text(data_yaml(ucf).replace(str(ucf / "ucfTrainTestlist" / "testlist01.txt"), str(partial)))
    (tmp_path / "clip.yaml").write_text(data_yaml(ucf).replace("data:\n", "data:\n  clip: [8, 16, 16]\n"))
    (tmp_path / "mode.yaml").write_text(data_yaml(ucf, extra="finetune:\n  mode: lora\n"))
    (tmp_path / "quantize.yaml").write_text(data_yaml(ucf, extra="finetune:\n  quantize: fp16\n"))
    four = write_network(tmp_path / "four.yaml", NETWORK.replace(num_classes=4))
    wider = write_weights(tmp_path / "wider.safetensors", NETWORK.replace(widths=(8, 24)))
    (tmp_path / "text.safetensors").write_text("not weights")
    data = str(files["data"])
    return {
        "no videos": (["--data", str(tmp_path / "empty.yaml")], "must hold videos"),
        "a class without videos": (["--data", str(tmp_path / "noclass.yaml")], "class 'MoveRight' must have at least one validation video, but has none"),
        "clip differs": (["--data", str(tmp_path / "clip.yaml")], "data.clip must equal the network's clip [4, 16, 16]"),
        "classes differ": (["--data", data, "--network", str(four)], "data must have the network's 4 classes"),
        "weights of another network": (["--data", data, "--weights", str(wider)], "stages.1.0.branch.0.weight must have shape (16, 1, 3, 3, 3) in this network, but got (24, 1, 3, 3, 3)."),
        "not a weights file": (["--data", data, "--weights", str(tmp_path / "text.safetensors")], "must be a safetensors file of the network's weights"),
        "unknown mode": (["--data", str(tmp_path / "mode.yaml")], "finetune.mode must be one of ('full', 'linear', 'adapters', 'bitfit'), but got 'lora'"),
        "unknown quantization": (["--data", str(tmp_path / "quantize.yaml")], "finetune.quantize must be one of ('none', 'int8'), but got 'fp16'"),
    }


CASES = ("no videos", "a class without videos", "clip differs", "classes differ", "weights of another network", "not a weights file", "unknown mode", "unknown quantization")


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case: str, tmp_path: Path, ucf: Path, files, capsys) -> None:
    args, message = _bad_inputs(tmp_path, ucf, files)[case]
    network = str(files["network"])
    if "--network" in args:
        i = args.index("--network")
        network, args = args[i + 1], args[:i] + args[i + 2 :]
    code = main(["finetune", network, *args, "--output-dir", str(files["runs"]), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("particle-nas: error: ") and err.count("\n") == 1 and message in err, err
    assert not files["runs"].exists()


def test_another_setting_on_an_existing_run_is_refused_and_its_checkpoint_kept(files, capsys) -> None:
    assert main(finetune(files, "--mode", "linear", "--epochs", "1")) == 0
    last = files["runs"] / "ucf" / "finetune" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    assert main(finetune(files, "--mode", "full", "--epochs", "1")) == 2
    assert "holds a fine-tuning run with other settings (finetune differ); only --epochs may change" in capsys.readouterr().err
    assert last.read_bytes() == before


# ---------------------------------------------------------------- --inflate: start from the network's 2D form (I3D)
def test_inflate_starts_from_the_2d_form_s_weights_inflated_and_a_resume_keeps_it(files, ucf: Path, tmp_path: Path, capsys) -> None:
    flat = save_weights(build_network(as_2d(NETWORK), seed=5), tmp_path / "2d.safetensors")  # as docs/finetune.md shows
    files["data"].write_text(data_yaml(ucf, epochs=1))
    argv = finetune(files, "--weights", str(flat))  # docs/finetune.md's command
    assert main(argv) == 2  # without --inflate: refused, with the hint
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in this network, but got (8, 1, 1, 3, 3) (these are the weights of the network's 2D form: pass --inflate)." in err, err
    assert not files["runs"].exists()

    given = load_file(str(flat))
    model_2d = build_network(as_2d(NETWORK))
    model_2d.load_state_dict(given)
    expected = inflate(model_2d, NETWORK).state_dict()
    start = build_model(load_job(str(files["network"]), str(files["data"]), weights=str(flat), inflate=True)).state_dict()
    assert start.keys() == expected.keys() and all(torch.equal(start[k], expected[k]) for k in start)
    inflated = [k for k in given if given[k].shape != start[k].shape]
    assert inflated  # the temporal kernels: kt equal slices that sum to the 2D kernel (I3D)
    for key in inflated:
        kt = start[key].shape[2]
        assert kt == 3 and given[key].shape[2] == 1 and torch.equal(start[key], start[key][:, :, :1].expand_as(start[key]))
        torch.testing.assert_close(start[key].sum(dim=2, keepdim=True), given[key])

    assert main(argv + ["--inflate"]) == 0
    out = files["runs"] / "ucf" / "finetune"
    report = json.loads((out / "report.json").read_text())
    assert report["weights"] == str(flat) and report["inflated"] is True
    assert f"Initial weights: <code>{flat}</code> (the network's 2D form, inflated by I3D's rule: --inflate)." in (out / "report.html").read_text()
    assert main(argv + ["--inflate", "--epochs", "2"]) == 0  # continues: the same fingerprint
    assert json.loads((out / "report.json").read_text())["resumed_from"] == 1
    capsys.readouterr()
    assert main(argv + ["--epochs", "2"]) == 2 and "pass --inflate" in capsys.readouterr().err  # not without it
    job = load_job(str(files["network"]), str(files["data"]), weights=str(flat), inflate=True)
    assert job.fingerprint()["inflated"] is True and "inflated" not in load_job(str(files["network"]), str(files["data"]), weights=str(flat)).fingerprint()


def test_inflate_with_new_head_keeps_a_fresh_head_and_a_3d_file_is_named_as_not_the_2d_form(files, tmp_path: Path) -> None:
    eight = NETWORK.replace(num_classes=8)
    network = str(write_network(tmp_path / "eight.yaml", eight))
    flat = save_weights(build_network(as_2d(eight), seed=5), tmp_path / "2d.safetensors")
    job = load_job(network, str(files["data"]), weights=str(flat), inflate=True, new_head=True)
    start, given = build_model(job).state_dict(), load_file(str(flat))
    fresh = build_network(job.network, seed=job.seed).state_dict()
    assert start["head.3.weight"].shape == (3, 16) and torch.equal(start["head.3.weight"], fresh["head.3.weight"])
    key = "stages.0.0.branch.3.weight"  # a temporal kernel, inflated (3 frames from 1)
    assert given[key].shape[2] == 1 and start[key].shape[2] == 3
    torch.testing.assert_close(start[key].sum(dim=2, keepdim=True), given[key])
    three_d = write_weights(tmp_path / "3d.safetensors", eight)
    with pytest.raises(ValueError, match=r"3d.safetensors \(--inflate: the weights of the network's 2D form\): stages.0.0.branch.\d.weight must have shape \(8, 1, 1, 3, 3\)"):
        build_model(load_job(network, str(files["data"]), weights=str(three_d), inflate=True, new_head=True))


@pytest.mark.parametrize("factorization", sorted(NOT_INFLATABLE))
def test_inflate_refuses_a_factorization_it_cannot_inflate_before_anything_is_written(factorization: str, files, tmp_path: Path, capsys) -> None:
    network = NETWORK.replace(particle=NETWORK.particle.replace(factorization=factorization))
    argv = ["finetune", str(write_network(tmp_path / "n.yaml", network)), "--data", str(files["data"]), "--weights", str(write_weights(tmp_path / "w.safetensors", network))]
    assert main([*argv, "--inflate", "--output-dir", str(files["runs"]), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"particle-nas: error: {tmp_path / 'n.yaml'}: --inflate: NetworkSpec.particle.factorization must be one of ") and err.count("\n") == 1, err
    assert f"({factorization}: {NOT_INFLATABLE[factorization]})" in err and not files["runs"].exists()


def test_inflate_without_weights_is_refused(files, capsys) -> None:
    assert main(finetune(files, "--inflate")) == 2
    assert "--inflate must come with --weights" in capsys.readouterr().err and not files["runs"].exists()


# ---------------------------------------------------------------- int8 quantization of the best epoch
def check_int8(out: Path, report: dict, data) -> dict:
    """The report's int8 entry is complete, and model-int8.onnx reloads to its recorded top-1 and top-5 on ``data``'s validation videos."""
    from particle_nas.evaluators import load_int8, load_video_task, predict

    quant = report["quantization"]
    assert quant["backend"] == "onnxruntime" and quant["file"] == "model-int8.onnx" and 0 < quant["calibration_clips"] <= 64
    path = out / "model-int8.onnx"
    assert path.stat().st_size == quant["size_bytes"]["int8"] and quant["size_bytes"]["fp32"] > 0
    assert 0 < quant["weight_bytes"]["int8"] < quant["weight_bytes"]["fp32"]
    assert quant["top1"]["fp32"] == pytest.approx(report["top1"]) and quant["top5"]["fp32"] == pytest.approx(report["top5"])
    assert all(quant["latency_ms"][k] > 0 for k in ("fp32", "int8", "fp32_onnxruntime"))
    assert len(quant["per_class"]) == len(report["class_names"]) and sum(map(sum, quant["confusion"])) == report["data"]["val_videos"]
    task = load_video_task(data, progress=False)
    predictions = predict(load_int8(path), task.val, num_classes=task.num_classes)
    assert (predictions.top1, predictions.top5) == (pytest.approx(quant["top1"]["int8"]), pytest.approx(quant["top5"]["int8"]))
    return quant


def test_quantize_after_a_finished_run_measures_int8_without_training_again(files, capsys) -> None:
    pytest.importorskip("onnxruntime", reason="int8 quantization needs onnxruntime (pip install -e '.[export]')")
    argv = finetune(files, "--mode", "adapters", "--epochs", "1")
    assert main(argv) == 0
    out = files["runs"] / "ucf" / "finetune"
    last, best = (out / "checkpoints" / "last.pt").read_bytes(), (out / "best.safetensors").read_bytes()
    assert json.loads((out / "report.json").read_text())["quantization"] is None and not (out / "model-int8.onnx").exists()
    capsys.readouterr()

    assert main(argv + ["--quantize", "int8"]) == 0  # the same run: quantize is not part of its fingerprint
    captured = capsys.readouterr()
    assert "trained already (1 epoch): nothing to train" in captured.err and "quantizing the best epoch to int8" in captured.err
    assert (out / "checkpoints" / "last.pt").read_bytes() == last and (out / "best.safetensors").read_bytes() == best  # not trained again
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["quantize"] == "int8" and report["resumed_from"] == 1
    quant = check_int8(out, report, load_job(str(files["network"]), str(files["data"])).data)
    assert re.search(rf"int8 \(onnxruntime\): top-1 {quant['top1']['int8']:.4f} \(fp32 {report['top1']:.4f}\), {quant['size_bytes']['int8']:,} bytes", captured.out)
    page = (out / "report.html").read_text()
    assert 'id="quantization-table"' in page and 'id="quantization-per-class"' in page and f"{quant['top1']['int8']:.4f} int8" in page


def test_quantize_without_onnxruntime_is_one_line_with_the_install_hint(files, monkeypatch, capsys) -> None:
    files["data"].write_text(files["data"].read_text() + "finetune:\n  quantize: int8\n")  # asked for in DATA.yaml
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    assert main(finetune(files)) == 2
    err = capsys.readouterr().err
    assert err == 'particle-nas: error: finetune.quantize int8 needs onnx and onnxruntime, which are not installed: pip install -e ".[export]"\n'
    assert not files["runs"].exists()


# ---------------------------------------------------------------- docs/finetune.md, on generated videos
def test_the_docs_example_on_generated_videos_runs_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("onnxruntime", reason="the example quantizes to int8 (pip install -e '.[export]')")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    commands = doc_commands("docs/finetune.md", "tests/cli/test_finetune_cli.py")
    assert commands[0].startswith("python examples/finetune/make_ucf_demo.py") and any(c.startswith("particle-nas finetune") for c in commands)
    run_doc_commands(commands, monkeypatch, no_progress=("search", "finetune"))
    out = tmp_path / "runs" / "ucf-demo" / "finetune"
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "adapters" and report["new_head"] is True and report["weights"] == "demo.safetensors"
    torch.testing.assert_close(report["params"]["ratio"], report["params"]["trainable"] / report["params"]["total"])
    full = sum(p.numel() for p in build_network(particle_nas.load_network("demo.yaml").replace(num_classes=3)).parameters())
    assert report["params"]["trainable"] <= 0.10 * full < report["params"]["total"]  # adapters train at most 10% of what full trains
    # int8: its accuracy and size are in the report, and model-int8.onnx reloads to the recorded top-1
    assert report["settings"]["quantize"] == "int8"
    quant = check_int8(out, report, load_job("demo.yaml", "examples/finetune/ucf_demo.yaml", new_head=True).data)
    page = (out / "report.html").read_text()
    assert f"{quant['top1']['fp32']:.4f} fp32 \u2192 {quant['top1']['int8']:.4f} int8" in page and 'id="quantization-table"' in page
    snippet = re.search(r"To use the fine-tuned model:\s*```python\n(.*?)```", (ROOT / "docs" / "finetune.md").read_text(), re.S).group(1)
    scope: dict = {}
    exec(compile(snippet, "docs/finetune.md", "exec"), scope)  # the page's Python, as written
    model = scope["model"]
    assert not model.training and sum(".adapter." in k for k in model.state_dict()) > 0
    assert model(torch.zeros(1, 3, 4, 16, 16)).shape == (1, 3) and scope["int8"](torch.zeros(2, 3, 4, 16, 16)).shape == (2, 3)
