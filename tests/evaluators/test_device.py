"""Device, precision and GPU-assignment policy, tested on the CPU (CUDA availability faked where a rule needs it)."""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator
from unittest import mock

import pytest
import torch

from particle_nas.evaluators import (
    ClipSet,
    DeviceClips,
    ProxyEvaluator,
    SyntheticConfig,
    TrainConfig,
    TrialOutOfMemory,
    ZERO_COST,
    cuda_backends,
    device_clips,
    gpu_for_worker,
    is_cuda_error,
    is_out_of_memory,
    make_metric,
    make_synthetic_task,
    parse_gpus,
    precision_policy,
    prepare_cuda_process,
    resolve_device,
    resolve_precision,
    train_proxy,
    trial_device,
)
from particle_nas.evaluators import _device
from particle_nas.evaluators._device import _RESIDENT, clear_resident_clips, resident_clips
from particle_nas.search._trial import fail_reason
from particle_nas.space import ParticleNet, SpecError, build_network

NO_CUDA = mock.patch("torch.cuda.is_available", return_value=False)


# ---------------------------------------------------------------- device
def test_auto_is_the_cpu_without_cuda() -> None:
    with NO_CUDA:
        assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu", cuda_available=True, device_count=8) == torch.device("cpu")


@pytest.mark.parametrize(("requested", "device"), [("auto", torch.device("cuda")), ("cuda", torch.device("cuda")), ("cuda:0", torch.device("cuda", 0)), ("cuda:3", torch.device("cuda", 3))])
def test_cuda_names_resolve_when_cuda_is_there(requested: str, device: torch.device) -> None:
    assert resolve_device(requested, cuda_available=True, device_count=4) == device  # auto and cuda: the current device, picked by torch


@pytest.mark.parametrize("requested", ["cuda", "cuda:0", "cuda:7"])
def test_cuda_without_cuda_is_one_line(requested: str) -> None:
    with NO_CUDA, pytest.raises(SpecError) as info:
        resolve_device(requested, field="train.device")
    message = str(info.value)
    assert message.startswith(f"train.device must be available: {requested} was asked but torch.cuda.is_available() is False (")
    assert message.endswith(f"use auto or cpu, but got {requested!r}.") and "\n" not in message


def test_a_gpu_index_past_the_count_is_refused() -> None:
    with pytest.raises(SpecError, match=r"^TrainConfig.device must be available: cuda:2 was asked but torch.cuda.device_count\(\) is 2 \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2", cuda_available=True, device_count=2)


@pytest.mark.parametrize("bad", ["gpu", "CUDA", "cuda:", "cuda:-1", "cuda:01", "cuda:0:1", "cpu:0", "mps", "", 0, None])
def test_device_names_are_validated(bad) -> None:
    with pytest.raises(SpecError, match=r"^TrainConfig.device must be auto, cpu, cuda or cuda:N \(N a CUDA device index\), but got "):
        TrainConfig(device=bad)


def test_train_config_validates_precision_and_deterministic() -> None:
    assert (TrainConfig().device, TrainConfig().precision, TrainConfig().deterministic) == ("auto", "auto", False)
    assert TrainConfig(device="cuda:12", precision="bf16", deterministic=True).device == "cuda:12"  # availability is checked when resolved
    with pytest.raises(SpecError, match=r"^TrainConfig.precision must be one of \('auto', 'fp32', 'bf16', 'fp16'\), but got 'float16'.$"):
        TrainConfig(precision="float16")
    with pytest.raises(SpecError, match=r"^TrainConfig.deterministic must be true or false, but got 1.$"):
        TrainConfig(deterministic=1)  # type: ignore[arg-type]


# ---------------------------------------------------------------- precision
@pytest.mark.parametrize(
    ("device_type", "requested", "bf16", "name", "dtype", "scaler"),
    [
        ("cuda", "auto", True, "bf16", torch.bfloat16, False),
        ("cuda", "auto", False, "fp16", torch.float16, True),
        ("cuda", "fp32", True, "fp32", None, False),
        ("cuda", "bf16", True, "bf16", torch.bfloat16, False),
        ("cuda", "fp16", True, "fp16", torch.float16, True),
        ("cuda", "fp16", False, "fp16", torch.float16, True),
        ("cpu", "auto", False, "fp32", None, False),
        ("cpu", "auto", True, "fp32", None, False),
        ("cpu", "fp32", False, "fp32", None, False),
        ("cpu", "bf16", False, "bf16", torch.bfloat16, False),
    ],
)
def test_precision_policy_table(device_type: str, requested: str, bf16: bool, name: str, dtype, scaler: bool) -> None:
    policy = precision_policy(device_type, requested, bf16)
    assert (policy.name, policy.dtype, policy.scaler) == (name, dtype, scaler)


@pytest.mark.parametrize(
    ("device_type", "requested", "bf16", "message"),
    [
        ("cuda", "bf16", False, "TrainConfig.precision must be supported by the GPU: bf16 was asked but torch.cuda.is_bf16_supported() is False; use auto or fp16, but got 'bf16'."),
        ("cpu", "fp16", False, "TrainConfig.precision must be fp32 or bf16 on cpu (fp16 needs CUDA), but got 'fp16'."),
        ("cpu", "int8", False, "TrainConfig.precision must be one of ('auto', 'fp32', 'bf16', 'fp16'), but got 'int8'."),
    ],
)
def test_precision_policy_refuses_what_the_device_cannot_do(device_type: str, requested: str, bf16: bool, message: str) -> None:
    with pytest.raises(SpecError) as info:
        precision_policy(device_type, requested, bf16)
    assert str(info.value) == message


def test_resolve_precision_on_this_cpu() -> None:
    assert resolve_precision("auto", torch.device("cpu")).name == "fp32"


def test_cpu_bf16_trains_under_autocast(tiny_data: SyntheticConfig, tiny_spec) -> None:
    task = make_synthetic_task(tiny_data)
    fp32 = train_proxy(build_network(tiny_spec(), seed=0), task, config=TrainConfig(epochs=1, threads=1))
    bf16 = train_proxy(build_network(tiny_spec(), seed=0), task, config=TrainConfig(epochs=1, threads=1, precision="bf16"))
    assert math.isfinite(bf16.train_loss[0]) and 0.0 <= bf16.accuracy <= 1.0
    assert bf16.train_loss != fp32.train_loss  # bf16 matmuls round differently: it really ran in bf16


# ---------------------------------------------------------------- cuda backends
def test_cuda_backends_autotune_or_go_deterministic_and_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    cudnn = torch.backends.cudnn
    monkeypatch.setattr(cudnn, "benchmark", False)
    monkeypatch.setattr(cudnn, "deterministic", False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cuda = torch.device("cuda", 0)  # only the flags are touched: no GPU needed
    with cuda_backends(cuda, deterministic=False):
        assert cudnn.benchmark and not cudnn.deterministic and not torch.are_deterministic_algorithms_enabled()
    with cuda_backends(cuda, deterministic=True):
        assert not cudnn.benchmark and cudnn.deterministic and torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled()) == (False, False, False)
    with cuda_backends(torch.device("cpu"), deterministic=True):
        assert not cudnn.deterministic and not torch.are_deterministic_algorithms_enabled()  # nothing changes on the CPU
    with cuda_backends(cuda, deterministic=False, benchmark=False):
        assert not cudnn.benchmark  # bench/gpu.py's "cudnn.benchmark off" row
    monkeypatch.setattr(_device, "CUDNN_BENCHMARK", False)
    with cuda_backends(cuda, deterministic=False):
        assert not cudnn.benchmark


@pytest.fixture
def tf32_on() -> Iterator[None]:
    """TF32 allowed (as a user may set it), put back as it was afterwards (torch's flags, set by assignment)."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32, cudnn.allow_tf32 = True, True
    yield
    matmul.allow_tf32, cudnn.allow_tf32 = before


def test_cuda_backends_turn_tf32_off_and_restore_it(tf32_on) -> None:
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    for deterministic in (False, True):  # fp32 means fp32 on CUDA, deterministic or not (autocast's bf16/fp16 are unaffected)
        with cuda_backends(torch.device("cuda", 0), deterministic=deterministic):
            assert (matmul.allow_tf32, cudnn.allow_tf32) == (False, False)
        assert (matmul.allow_tf32, cudnn.allow_tf32) == (True, True)
    with cuda_backends(torch.device("cpu"), deterministic=False):
        assert matmul.allow_tf32  # the CPU: nothing touched


@pytest.mark.parametrize("name", sorted(ZERO_COST))
def test_zero_cost_scores_run_without_tf32(tf32_on, tiny_spec, name: str) -> None:
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    model = build_network(tiny_spec(), seed=0)
    seen: list[tuple[bool, bool]] = []
    model.register_forward_hook(lambda module, inputs, output: seen.append((matmul.allow_tf32, cudnn.allow_tf32)))
    batch = (torch.randn(4, *tiny_spec().input_shape, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3]))
    make_metric(name).measure(model, batch)
    assert seen and set(seen) == {(False, False)}  # called outside any trial (no cuda_backends), still no TF32
    assert (matmul.allow_tf32, cudnn.allow_tf32) == (True, True)


def test_a_worker_sets_the_cublas_workspace_before_cuda_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    prepare_cuda_process()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    prepare_cuda_process()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"  # the user's own setting wins


# ---------------------------------------------------------------- GPUs for workers and trials
@pytest.mark.parametrize(
    ("worker", "gpus", "count", "gpu"),
    [(0, None, 4, 0), (3, None, 4, 3), (5, None, 4, 1), (7, None, 2, 1), (0, (2, 3), 4, 2), (1, (2, 3), 4, 3), (2, (2, 3), 4, 2), (4, [5], 8, 5), (0, None, 0, None), (9, None, 0, None)],
)
def test_gpu_for_worker_is_round_robin(worker: int, gpus, count: int, gpu) -> None:
    assert gpu_for_worker(worker, gpus=gpus, device_count=count) == gpu


def test_every_gpu_gets_its_share_of_workers() -> None:
    assigned = [gpu_for_worker(w, gpus=None, device_count=8) for w in range(32)]
    assert all(assigned.count(g) == 4 for g in range(8))
    with pytest.raises(SpecError, match=r"^worker must be an integer >= 0, but got -1.$"):
        gpu_for_worker(-1, gpus=None, device_count=2)


@pytest.mark.parametrize(("text", "gpus"), [("0,1,3", (0, 1, 3)), (" 2 , 0 ", (2, 0)), ("5", (5,)), ([1, 0], (1, 0)), ("", None), ("all", None), (None, None)])
def test_parse_gpus(text, gpus) -> None:
    assert parse_gpus(text) == gpus


@pytest.mark.parametrize(
    ("text", "count", "rule"),
    [("0,x", None, "must be GPU indices separated by commas, e.g. 0,1,3"), ("0,-1", None, "must be GPU indices"), ("1,1", None, "must not repeat a GPU"),
     ("0,2", 2, r"must name GPUs this machine has \(torch.cuda.device_count\(\) is 2\)"), ([True], None, "must be GPU indices")],
)
def test_parse_gpus_refuses(text, count, rule: str) -> None:
    with pytest.raises(SpecError, match=rf"^--gpus {rule}"):
        parse_gpus(text, device_count=count)


@pytest.mark.parametrize(
    ("requested", "kwargs", "device"),
    [
        ("cpu", {"worker": 3, "cuda_available": True, "device_count": 4}, "cpu"),  # explicit choices win
        ("cuda:2", {"worker": 3, "cuda_available": True, "device_count": 4}, "cuda:2"),
        ("auto", {"worker": 3, "cuda_available": True, "device_count": 2}, "cuda:1"),  # worker i on GPU i mod G
        ("cuda", {"worker": 4, "gpus": (1, 3), "cuda_available": True, "device_count": 4}, "cuda:1"),  # --gpus 1,3
        ("auto", {"worker": 3, "cuda_available": False, "device_count": 0}, "cpu"),
        ("cuda", {"worker": 3, "cuda_available": False, "device_count": 0}, "cuda"),  # left for resolve_device's one line
        ("auto", {"cuda_available": True, "device_count": 2}, "auto"),  # not a worker: the current device
        ("auto", {"ray_gpu_ids": [5], "cuda_available": True, "device_count": 1}, "cuda:0"),  # Ray made GPU 5 the only visible one
        ("auto", {"ray_gpu_ids": ["2"], "worker": 1, "cuda_available": True, "device_count": 1}, "cuda:0"),
        ("auto", {"ray_gpu_ids": [], "cuda_available": False}, "cpu"),  # a Ray trial given no GPU
    ],
)
def test_trial_device(requested: str, kwargs: dict, device: str) -> None:
    assert trial_device(requested, **kwargs) == device


def test_on_device_sets_train_device(tiny_data: SyntheticConfig) -> None:
    evaluator = ProxyEvaluator(data=tiny_data).on_device("cuda:1")
    assert evaluator.train.device == "cuda:1" and evaluator.data == tiny_data
    with pytest.raises(SpecError, match=r"^train.device must be auto, cpu, cuda or cuda:N"):
        evaluator.on_device("gpu1")


# ---------------------------------------------------------------- out of memory
@pytest.mark.parametrize(
    "error",
    [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 139.8 GiB total capacity)\nmore"), RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED out of memory")],
)
def test_a_cuda_out_of_memory_fails_the_trial_and_frees_the_cache(monkeypatch: pytest.MonkeyPatch, tiny_data: SyntheticConfig, tiny_spec, error: Exception) -> None:
    def forward(self, x):
        raise error

    monkeypatch.setattr(ParticleNet, "forward", forward)
    empty_cache = mock.Mock()
    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
    evaluator = ProxyEvaluator(data=tiny_data, train=TrainConfig(epochs=1, threads=1))
    with pytest.raises(TrialOutOfMemory) as info:
        evaluator.evaluate(tiny_spec(), seed=0)
    first = str(error).splitlines()[0]
    assert str(info.value) == f"out of memory on cpu: {first}"
    assert isinstance(info.value, MemoryError) and info.value.__context__ is None and info.value.__cause__ is None
    empty_cache.assert_called_once()
    reason = fail_reason(info.value)
    assert reason == f"TrialOutOfMemory: out of memory on cpu: {first}" and "\n" not in reason  # the prefix docs/gpu.md promises
    back = pickle.loads(pickle.dumps(info.value))  # survives the trip back from a worker process
    assert type(back) is TrialOutOfMemory and str(back) == str(info.value)


@pytest.mark.parametrize(
    ("error", "cuda"),
    [
        (RuntimeError("CUDA error: an illegal memory access was encountered\nCompile with `TORCH_USE_CUDA_DSA`"), True),
        (RuntimeError("CUDA error: device-side assert triggered"), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"), True),
        (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, ...)`"), True),
        (torch.AcceleratorError("unspecified launch failure"), True),
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), False),  # out of memory: the trial fails, the worker goes on
        (RuntimeError("CUDA error: out of memory"), False),
        (TrialOutOfMemory("out of memory on cuda:0 (H100): CUDA error: out of memory"), False),
        (RuntimeError("shapes cannot be multiplied"), False),
        (ValueError("CUDA error: not a RuntimeError"), False),
    ],
)
def test_a_cuda_error_other_than_out_of_memory_interrupts_its_trial(error: BaseException, cuda: bool) -> None:
    assert is_cuda_error(error) is cuda
    reason = fail_reason(error)
    assert reason.startswith("interrupted: the worker stopped after a CUDA error (") is cuda and "\n" not in reason


def test_other_errors_pass_through(monkeypatch: pytest.MonkeyPatch, tiny_data: SyntheticConfig, tiny_spec) -> None:
    def forward(self, x):
        raise RuntimeError("shapes cannot be multiplied")

    monkeypatch.setattr(ParticleNet, "forward", forward)
    with pytest.raises(RuntimeError, match="^shapes cannot be multiplied$"):
        ProxyEvaluator(data=tiny_data, train=TrainConfig(epochs=1, threads=1)).evaluate(tiny_spec(), seed=0)
    assert not is_out_of_memory(MemoryError()) and not is_out_of_memory(TrialOutOfMemory("out of memory on cpu: x"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))


# ---------------------------------------------------------------- clips on a device
def test_device_clips_on_the_cpu_are_the_clip_sets_own_batches(tiny_data: SyntheticConfig) -> None:
    task = make_synthetic_task(tiny_data)
    order = torch.randperm(len(task.train), generator=torch.Generator().manual_seed(0))[:16]
    clips = device_clips(task, "train", torch.device("cpu"))
    assert clips.clips is task.train and len(clips) == len(task.train)
    for got, want in zip(clips.batch(order), task.train.batch(order)):
        assert torch.equal(got, want)


def test_resident_clips_are_moved_once_per_config_and_device(tiny_data: SyntheticConfig) -> None:
    clear_resident_clips()
    task = make_synthetic_task(tiny_data)
    meta = torch.device("meta")  # a device without memory: checks what is copied, not a GPU measurement
    first = resident_clips(task.train, meta, key=(tiny_data, "train"))
    assert first.clips.device == meta and first.clips.shape == task.train.clips.shape
    assert resident_clips(task.train, meta, key=(tiny_data, "train")) is first
    assert resident_clips(task.val, meta, key=(tiny_data, "val")) is not first
    assert resident_clips(task.train, meta, key=None) is not first  # no key: copied, not kept
    for seed in range(1, 5):  # a few other tasks push the oldest out
        other = SyntheticConfig(num_classes=4, train_size=8, val_size=8, clip=(4, 8, 8), seed=seed)
        resident_clips(ClipSet(clips=task.train.clips[:8], labels=task.train.labels[:8]), meta, key=(other, "train"))
    assert len(_RESIDENT) == 4 and (tiny_data, "train", "meta") not in _RESIDENT
    clear_resident_clips()
    assert not _RESIDENT and DeviceClips(task.val, torch.device("cpu"), resident=True).clips is task.val


def test_an_epochs_order_stays_where_the_clips_are_indexed(tiny_data: SyntheticConfig) -> None:
    task = make_synthetic_task(tiny_data)
    order = torch.randperm(len(task.train), generator=torch.Generator().manual_seed(0))
    clips = device_clips(task, "train", torch.device("cpu"))
    assert clips.epoch_order(order) is order  # the CPU: no copy (on CUDA: one pinned copy per epoch, see docs/gpu.md)
