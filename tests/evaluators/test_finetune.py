from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from particle_nas.evaluators import (
    FINETUNE_MODES,
    FineTuneSettings,
    FrozenBatchNorm3d,
    TrainConfig,
    VideoFolderConfig,
    check_video_split,
    check_weights,
    finetune,
    load_video_task,
    param_counts,
    predict,
    prepare_for_finetuning,
    read_checkpoint,
)
from particle_nas.space import NetworkSpec, ParticleSpec, SpecError, build_network

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "finetune"))
from make_ucf_demo import CLASSES, make_ucf_tree  # noqa: E402

av = pytest.importorskip("av", reason="the fine-tuning tests need PyAV (pip install av)")

CLIP = (4, 16, 16)
NETWORK = NetworkSpec(
    particle=ParticleSpec(factorization="full", wiring="residual", temporal_kernel=3),
    stem_channels=8,
    widths=(8, 16),
    depths=(1, 1),
    temporal_strides=(1, 1),
    spatial_strides=(1, 2),
    clip=CLIP,
    num_classes=3,
)
TRAIN = TrainConfig(epochs=2, batch_size=4, lr=0.01, warmup_epochs=0.0, threads=1, seed=0)


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    return make_ucf_tree(tmp_path_factory.mktemp("ucf"))


@pytest.fixture(scope="module")
def data(ucf: Path) -> VideoFolderConfig:
    lists = ucf / "ucfTrainTestlist"
    return VideoFolderConfig(root=str(ucf / "UCF-101"), clip=CLIP, train_list=str(lists / "trainlist01.txt"), val_list=str(lists / "testlist01.txt"), class_index=str(lists / "classInd.txt"))


@pytest.fixture(scope="module")
def task(data: VideoFolderConfig, tmp_path_factory):
    return load_video_task(data, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def _model(mode: str, *, seed: int = 0, weights=None):
    return prepare_for_finetuning(build_network(NETWORK, seed=seed), FineTuneSettings(mode=mode), seed=seed, weights=weights)


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- data
def test_ucf_split_files_and_class_index(data: VideoFolderConfig, task) -> None:
    assert data.class_names == tuple(sorted(CLASSES))
    train, val = check_video_split(data)
    assert len(train) == 9 and len(val) == 3  # 3 training groups and 1 test group per class
    assert sorted(label for _, label in val) == [0, 1, 2]
    assert task.train.clips.shape[1:] == (3, *CLIP) and task.num_classes == 3


def test_class_index_order_decides_the_labels(ucf: Path) -> None:
    index = ucf / "reversed.txt"
    index.write_text("".join(f"{i} {c}\n" for i, c in enumerate(sorted(CLASSES, reverse=True), start=1)))
    config = VideoFolderConfig(root=str(ucf / "UCF-101"), clip=CLIP, class_index=str(index))
    assert config.class_names == tuple(sorted(CLASSES, reverse=True))
    index.write_text("1 MoveDown\n2 Jump\n")
    with pytest.raises(SpecError, match="class_index must list only sub-folders of root, but got 'Jump'"):
        VideoFolderConfig(root=str(ucf / "UCF-101"), clip=CLIP, class_index=str(index))


def test_a_class_without_videos_or_a_folder_without_any_is_refused(tmp_path: Path, ucf: Path) -> None:
    for cls in ("a", "b"):
        (tmp_path / "empty" / cls).mkdir(parents=True)
    with pytest.raises(ValueError, match="must hold videos"):
        check_video_split(VideoFolderConfig(root=str(tmp_path / "empty"), clip=CLIP))
    test_list = tmp_path / "test.txt"
    test_list.write_text("MoveDown/v_MoveDown_g04_c01.avi\nMoveLeft/v_MoveLeft_g04_c01.avi\n")
    config = VideoFolderConfig(root=str(ucf / "UCF-101"), clip=CLIP, train_list=str(ucf / "ucfTrainTestlist" / "trainlist01.txt"), val_list=str(test_list))
    with pytest.raises(ValueError, match="class 'MoveRight' must have at least one validation video, but has none"):
        check_video_split(config)


# ---------------------------------------------------------------- modes
@pytest.mark.parametrize("mode", FINETUNE_MODES)
def test_each_mode_trains_only_its_parameters_and_frozen_tensors_stay_bit_identical(mode: str, task, tmp_path: Path) -> None:
    model = _model(mode)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    frozen_modules = [name for name, m in model.named_modules() if isinstance(m, FrozenBatchNorm3d)]
    before = _snapshot(model)
    finetune(model, task, config=TRAIN, out_dir=tmp_path, fingerprint={"mode": mode}, progress=False)
    after = model.state_dict()
    assert set(after) == set(before)

    def frozen(key: str) -> bool:  # a frozen parameter, or a buffer of a frozen batch norm
        return key not in trainable and (key in dict(model.named_parameters()) or any(key.startswith(m + ".") for m in frozen_modules))

    frozen_keys = [k for k in after if frozen(k)]
    for key in frozen_keys:
        assert torch.equal(after[key], before[key]), f"{mode}: frozen {key} changed"
    assert any(not torch.equal(after[k], before[k]) for k in trainable), f"{mode}: nothing trained"
    if mode == "full":
        assert not frozen_keys and not frozen_modules
    elif mode == "linear":
        assert trainable == {"head.3.weight", "head.3.bias"}
    elif mode == "adapters":
        assert trainable and all(k.startswith("head.") or ".adapter." in k for k in trainable)
        assert any(".adapter.up.weight" in k for k in trainable)
    else:  # bitfit: biases, norms and the head
        norms = {n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm3d)}
        assert all(k.startswith("head.") or k.endswith(".bias") or k.rpartition(".")[0] in norms for k in trainable)
        assert any(k.endswith(".bias") and not k.startswith("head.") for k in trainable)
    counts = param_counts(model)
    assert counts.trainable == sum(p.numel() for n, p in model.named_parameters() if n in trainable)


def test_adapters_train_under_10_percent_of_full_on_the_readme_bigger_network() -> None:
    """The README's "bigger network": R(2+1)D-style residual particles, widths 64-512, depths 2, clip 16x112x112, 400 classes."""
    bigger = NetworkSpec(
        particle=ParticleSpec(factorization="r2plus1d", wiring="residual", temporal_kernel=3),
        stem_channels=64,
        widths=(64, 128, 256, 512),
        depths=(2, 2, 2, 2),
        temporal_strides=(1, 2, 2, 2),
        spatial_strides=(1, 2, 2, 2),
        clip=(16, 112, 112),
        num_classes=400,
    )
    full = param_counts(prepare_for_finetuning(build_network(bigger, seed=0), FineTuneSettings(mode="full")))
    adapters = param_counts(prepare_for_finetuning(build_network(bigger, seed=0), FineTuneSettings(mode="adapters")))
    ratio = adapters.trainable / full.trainable
    assert adapters.total - full.total == adapters.trainable - (512 * 400 + 400)  # the adapters, beside the head
    assert ratio <= 0.10, f"adapters train {adapters.trainable:,} of full's {full.trainable:,} ({ratio:.2%})"
    assert 0.005 < ratio < 0.03  # measured: 555,760 of 33,357,222 (1.67%; the total with adapters is 33,707,782)


# ---------------------------------------------------------------- resume, best, seed
def test_interrupted_run_resumes_to_exactly_the_uninterrupted_result(task, tmp_path: Path) -> None:
    straight = _model("adapters")
    done = finetune(straight, task, config=TRAIN, out_dir=tmp_path / "a", fingerprint={"run": 1}, progress=False)

    def stop(epoch: int, accuracy: float) -> None:
        raise KeyboardInterrupt

    first = _model("adapters")
    with pytest.raises(KeyboardInterrupt):
        finetune(first, task, config=TRAIN, out_dir=tmp_path / "b", fingerprint={"run": 1}, progress=False, on_epoch=stop)
    checkpoint = read_checkpoint(tmp_path / "b", {"run": 1})
    assert checkpoint["epoch"] == 1 and len(checkpoint["metrics"]["val_top1"]) == 1
    again = _model("adapters")  # a new process: fresh model, state from the checkpoint
    resumed = finetune(again, task, config=TRAIN, out_dir=tmp_path / "b", fingerprint={"run": 1}, checkpoint=checkpoint, progress=False)
    assert resumed.resumed_from == 1
    assert resumed.val_top1 == done.val_top1 and resumed.train_loss == done.train_loss
    for key, value in straight.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert load_file(str(tmp_path / "a" / "best.safetensors")).keys() == load_file(str(tmp_path / "b" / "best.safetensors")).keys()
    with pytest.raises(ValueError, match=r"other settings \(run differ\); only --epochs may change"):
        read_checkpoint(tmp_path / "b", {"run": 2})


def test_more_epochs_continue_a_finished_run(task, tmp_path: Path) -> None:
    one = finetune(_model("linear"), task, config=TrainConfig(**{**TRAIN.__dict__, "epochs": 1}), out_dir=tmp_path, fingerprint={}, progress=False)
    more = finetune(_model("linear"), task, config=TRAIN, out_dir=tmp_path, fingerprint={}, checkpoint=read_checkpoint(tmp_path, {}), progress=False)
    assert more.resumed_from == 1 and len(more.val_top1) == 2 and more.val_top1[0] == one.val_top1[0]


def test_best_epoch_is_kept_and_same_seed_same_result(task, tmp_path: Path) -> None:
    config = TrainConfig(**{**TRAIN.__dict__, "epochs": 3, "lr": 0.05})
    snapshots = {}
    model = _model("full")
    result = finetune(model, task, config=config, out_dir=tmp_path / "a", fingerprint={}, progress=False, on_epoch=lambda e, a: snapshots.update({e: _snapshot(model)}))
    best = max(range(1, 4), key=lambda e: (result.val_top1[e - 1], -e))  # the first epoch with the highest top-1
    assert result.best_epoch == best and result.best_val_top1 == max(result.val_top1)
    kept = load_file(str(result.best_path))
    for key, value in snapshots[best].items():
        assert torch.equal(kept[key], value.cpu().contiguous()), key
    twin = _model("full")
    again = finetune(twin, task, config=config, out_dir=tmp_path / "b", fingerprint={}, progress=False)
    assert again.val_top1 == result.val_top1 and again.train_loss == result.train_loss
    other = finetune(_model("full", seed=1), task, config=TrainConfig(**{**config.__dict__, "seed": 1}), out_dir=tmp_path / "c", fingerprint={}, progress=False)
    assert other.train_loss != result.train_loss


# ---------------------------------------------------------------- weights and predictions
def test_weights_that_do_not_fit_are_refused_in_one_line() -> None:
    model = _model("adapters")
    base = build_network(NETWORK, seed=1).state_dict()
    assert set(check_weights(model, base, where="w.safetensors")) == set(base)  # adapters may be absent: they stay fresh
    with pytest.raises(ValueError, match="must hold every tensor of the network, but 1 are missing"):
        check_weights(model, {k: v for k, v in base.items() if k != "stem.0.weight"}, where="w")
    with pytest.raises(ValueError, match="tensor\\(s\\) it has not, e.g. 'extra.weight'"):
        check_weights(model, {**base, "extra.weight": torch.zeros(1)}, where="w")
    eight = build_network(NETWORK.replace(num_classes=8), seed=1).state_dict()
    with pytest.raises(ValueError, match=r"head.*must have shape \(3, 16\) in this network, but got \(8, 16\) \(another number of classes: pass --new-head"):
        check_weights(model, eight, where="w")
    loaded = prepare_for_finetuning(build_network(NETWORK, seed=0), FineTuneSettings(mode="linear"), weights=eight, new_head=True)
    assert torch.equal(loaded.state_dict()["stem.0.weight"], eight["stem.0.weight"])
    wider = build_network(NETWORK.replace(widths=(8, 24)), seed=1).state_dict()
    with pytest.raises(ValueError, match="must have shape"):
        check_weights(model, wider, where="w")


def test_predict_counts_the_confusion_matrix_and_top_k(task) -> None:
    model = _model("full").eval()
    predictions = predict(model, task.val, num_classes=3, batch_size=2, k=2)
    with torch.no_grad():
        x, y = task.val.batch(slice(None))
        logits = model(x)
    expected = torch.zeros((3, 3), dtype=torch.int64)
    for true, guess in zip(y.tolist(), logits.argmax(1).tolist()):
        expected[true, guess] += 1
    assert [list(r) for r in predictions.confusion] == expected.tolist()
    assert predictions.top_k == 2 and predictions.top_k_correct == int((logits.topk(2, 1).indices == y[:, None]).any(1).sum())
    assert predictions.top1 == pytest.approx((logits.argmax(1) == y).float().mean().item())
