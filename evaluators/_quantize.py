"""Int8 post-training quantization of a trained network, on the CPU, with ONNX Runtime.

::

    model (float32, eval) --torch.onnx.export--> ONNX (batch norm folded into the convs)
      --quant_pre_process--> shapes inferred, graph optimized
      --quantize_static(QDQ, calibration clips)--> int8 ONNX: int8 weights (per output channel),
         uint8 activations (per tensor, min/max over the calibration clips), int32 biases
      --onnxruntime.InferenceSession--> Int8Model (an nn.Module: clips in, logits out)

Every op of every particle is covered: Conv (3D, grouped and depthwise included),
Gemm, Add and Mul run as int8 kernels where ONNX Runtime has them (its graph
optimizer fuses each Q/DQ pair around a Conv into QLinearConv); ops without
an int8 kernel (the temporal shift's Slice/Pad/Concat, Sigmoid of
squeeze-excite, SiLU) run in float32 between a DequantizeLinear and a
QuantizeLinear. Modules named in ``keep_float`` are left wholly in float32.

Why ONNX Runtime and not torch.ao.quantization: in torch 2.13 the eager and FX
modes of ``torch.ao.quantization`` warn that they are deprecated (to be
removed, moved to torchao), and so are the quantized tensor dtypes they run
on; FX tracing also stops at the temporal shift's shape-dependent Python
code. PT2E lives in torchao, which is not a dependency. ONNX Runtime's static
quantization is maintained, runs every factorization and wiring of the space,
and its output is a deployable file (``save_int8``).
"""

from __future__ import annotations

import copy
import io
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from particle_nas.space import SpecError, check_choice

QUANT_BACKENDS: tuple[str, ...] = ("onnxruntime",)
_INSTALL_HINT = "int8 quantization needs onnx and onnxruntime, which are not installed: pip install onnx onnxruntime (or pip install -e '.[export]')"


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL_HINT) from err
    return onnx, onnxruntime


class Int8Model(nn.Module):
    """An int8 network run by ONNX Runtime on the CPU: ``forward(clips (N, C, T, H, W)) -> logits (N, classes)``.

    Holds the quantized ONNX model's bytes (``onnx_bytes``); the session is made
    on first use. It has no parameters: its weights are int8 tensors inside the model.
    """

    def __init__(self, onnx_bytes: bytes, *, threads: int | None = None) -> None:
        super().__init__()
        self.onnx_bytes = bytes(onnx_bytes)
        self.threads = threads  # intra-op threads of the session; None = torch.get_num_threads() when it is made
        self._session: Any = None

    @property
    def session(self) -> Any:
        if self._session is None:
            _, ort = _require_onnx()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads or torch.get_num_threads()
            options.log_severity_level = 3
            self._session = ort.InferenceSession(self.onnx_bytes, options, providers=["CPUExecutionProvider"])
        return self._session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clips = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run(None, {"clip": clips})
        return torch.from_numpy(logits).to(x.device)

    @property
    def size_bytes(self) -> int:
        """Bytes of the model's stored tensors (int8 weights, int32 biases, scales, zero points): see ``weight_bytes``."""
        return weight_bytes(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Int8Model:
        return Int8Model(self.onnx_bytes, threads=self.threads).train(self.training)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None  # sessions do not pickle; the bytes make a new one
        return state

    def extra_repr(self) -> str:
        return f"onnxruntime, {len(self.onnx_bytes):,} bytes"


def _scope(module_name: str) -> str:
    """The ONNX node-name prefix torch's exporter gives the ops of module ``module_name`` ("stages.1" -> "/stages/stages.1/")."""
    parts = module_name.split(".")
    return "/" + "/".join(".".join(parts[: i + 1]) for i in range(len(parts))) + "/"


def export_onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """``model`` (float32, eval, CPU) as ONNX bytes: input ``clip`` with a dynamic batch axis, output ``logits`` (opset 17)."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export needs onnx, which is not installed: pip install onnx onnxruntime") from err
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python ints (fixed clip size)
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            input_names=["clip"],
            output_names=["logits"],
            dynamic_axes={"clip": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )
    return buffer.getvalue()


def _calibration_batches(calibration: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(calibration, torch.Tensor):
        calibration = [calibration]
    batches = []
    for i, batch in enumerate(calibration):
        if not isinstance(batch, torch.Tensor) or batch.dim() != 5 or not batch.is_floating_point() or batch.shape[0] < 1:
            got = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ValueError(f"calibration[{i}] must be a float tensor of clips (N, C, T, H, W), but got {got}.")
        if batches and batch.shape[1:] != batches[0].shape[1:]:
            raise ValueError(f"calibration[{i}] must have the clip shape of calibration[0] {tuple(batches[0].shape[1:])}, but got {tuple(batch.shape[1:])}.")
        batches.append(batch.detach().to("cpu", torch.float32).contiguous())
    if not batches:
        raise ValueError("calibration must hold at least one batch of clips, but it was empty.")
    return batches


def quantize_int8(
    model: nn.Module,
    calibration: Iterable[torch.Tensor],
    *,
    backend: str = "onnxruntime",
    keep_float: Iterable[str] = (),
    threads: int | None = None,
) -> Int8Model:
    """Int8 post-training static quantization of ``model``, calibrated on ``calibration``.

    ``calibration``: batches of float clips (N, C, T, H, W), normalized as in
    training (``ClipSet.batch``); activation ranges are the min/max seen over
    all of them. ``keep_float``: names of submodules (as in
    ``model.named_modules()``, e.g. ``"stages.1"``) to leave in float32.
    ``model`` is not changed (a CPU copy is exported in eval mode).
    Returns an ``Int8Model`` (see ``save_int8``).
    """
    check_choice("quantize_int8.backend", backend, QUANT_BACKENDS)
    onnx, _ = _require_onnx()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = _calibration_batches(calibration)
    names = dict(model.named_modules())
    keep = [keep_float] if isinstance(keep_float, str) else list(keep_float)
    for name in keep:
        if not name or name not in names:
            raise SpecError("quantize_int8.keep_float", "must name submodules of the model", name)
    float_model = copy.deepcopy(model).to("cpu", torch.float32).eval()
    fp32 = export_onnx(float_model, batches[0][:1])
    graph = onnx.load_from_string(fp32).graph
    excluded = [node.name for node in graph.node if any(node.name.startswith(_scope(name)) for name in keep)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"clip": batch.numpy()}

    quant_logger = logging.getLogger()  # onnxruntime.quantization logs its advice on the root logger
    level = quant_logger.level
    with tempfile.TemporaryDirectory(prefix="particle-nas-int8-") as tmp:
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32)
        try:
            quant_logger.setLevel(logging.ERROR)
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
            quantize_static(
                str(pre),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,  # 7-bit weights: x86 CPUs without VNNI saturate u8 x s8 products (VPMADDUBSW) otherwise
                nodes_to_exclude=excluded,
            )
        finally:
            quant_logger.setLevel(level)
        return Int8Model(out.read_bytes(), threads=threads)


def save_int8(model: Int8Model, path: str | Path) -> Path:
    """Write the int8 network as an ONNX file at ``path`` (folders created; written whole, then moved)."""
    if not isinstance(model, Int8Model):
        raise TypeError(f"save_int8 expects the Int8Model quantize_int8 returns, but got {type(model).__name__}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(model.onnx_bytes)
    tmp.replace(path)
    return path


def load_int8(path: str | Path, *, threads: int | None = None) -> Int8Model:
    """The int8 network ``save_int8`` wrote (any ONNX file with input ``clip`` runs the same way)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be an int8 ONNX file written by save_int8, but got {str(path)!r} (no such file).")
    return Int8Model(path.read_bytes(), threads=threads)


def state_bytes(model: nn.Module) -> int:
    """Bytes of a float model's stored tensors: every ``state_dict`` entry, numel x element size (4 x params + buffers for float32)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def weight_bytes(model: Int8Model) -> int:
    """Bytes of an int8 model's stored tensors (the ONNX initializers: int8 weights, int32 biases, scales, zero points)."""
    onnx, _ = _require_onnx()
    from onnx import numpy_helper

    graph = onnx.load_from_string(model.onnx_bytes).graph
    return sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)


def size_bytes(model: nn.Module) -> int:
    """The ``size_bytes`` metric: ``weight_bytes`` of an Int8Model, ``state_bytes`` of any other model."""
    return weight_bytes(model) if isinstance(model, Int8Model) else state_bytes(model)


def _median_latency_ms(run: Any, clip: torch.Tensor, *, warmup: int, repeats: int) -> float:
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            run(clip)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def compare_int8(
    model_fp32: nn.Module,
    model_int8: Int8Model,
    clips: torch.Tensor,
    labels: torch.Tensor,
    *,
    warmup: int = 3,
    repeats: int = 15,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Size, CPU latency and top-1 of a float network and its int8 version, on ``clips`` (N, C, T, H, W) float, ``labels`` (N,).

    - ``size_bytes_fp32`` / ``size_bytes_int8``: bytes of the ONNX files (the float
      network exported as ``quantize_int8`` does, and the int8 one as ``save_int8`` writes it);
      ``weight_bytes_fp32`` / ``weight_bytes_int8``: the stored tensors of those files alone
      (``weight_bytes``: no graph, no names), which a file's bytes hide for small networks;
    - ``latency_ms_fp32`` (PyTorch, eval, no_grad) / ``latency_ms_int8`` (ONNX Runtime):
      median batch-1 forward time over ``repeats`` passes after ``warmup``, on the CPU, with
      torch's thread count; ``latency_ms_fp32_onnxruntime``: the float ONNX file in ONNX Runtime
      (the same runtime as the int8 one, so the difference is the quantization's alone);
    - ``top1_fp32`` / ``top1_int8``, ``top1_agreement`` (fraction of clips with the same
      top-1 class) and ``max_abs_logit_diff``; ``backend``: "onnxruntime".
    """
    if not isinstance(model_int8, Int8Model):
        raise TypeError(f"compare_int8 expects the Int8Model quantize_int8 returns as model_int8, but got {type(model_int8).__name__}.")
    if not isinstance(clips, torch.Tensor) or clips.dim() != 5 or not clips.is_floating_point() or len(clips) < 1:
        raise ValueError(f"clips must be a float tensor (N, C, T, H, W) with N >= 1, but got {tuple(clips.shape) if isinstance(clips, torch.Tensor) else type(clips).__name__}.")
    if not isinstance(labels, torch.Tensor) or labels.shape != clips.shape[:1]:
        raise ValueError(f"labels must be a tensor of shape ({len(clips)},), but got {tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}.")
    float_model = copy.deepcopy(model_fp32).to("cpu", torch.float32).eval()
    clips = clips.detach().to("cpu", torch.float32)
    fp32_onnx = Int8Model(export_onnx(float_model, clips[:1]), threads=model_int8.threads)  # the same runtime, float weights
    with torch.no_grad():
        ref = torch.cat([float_model(clips[s : s + batch_size]) for s in range(0, len(clips), batch_size)])
        out = torch.cat([model_int8(clips[s : s + batch_size]) for s in range(0, len(clips), batch_size)])
    one = clips[:1]
    return {
        "backend": "onnxruntime",
        "size_bytes_fp32": len(fp32_onnx.onnx_bytes),
        "size_bytes_int8": len(model_int8.onnx_bytes),
        "weight_bytes_fp32": weight_bytes(fp32_onnx),
        "weight_bytes_int8": weight_bytes(model_int8),
        "latency_ms_fp32": _median_latency_ms(float_model, one, warmup=warmup, repeats=repeats),
        "latency_ms_int8": _median_latency_ms(model_int8, one, warmup=warmup, repeats=repeats),
        "latency_ms_fp32_onnxruntime": _median_latency_ms(fp32_onnx, one, warmup=warmup, repeats=repeats),
        "top1_fp32": float((ref.argmax(dim=1) == labels.cpu()).float().mean()),
        "top1_int8": float((out.argmax(dim=1) == labels.cpu()).float().mean()),
        "top1_agreement": float((ref.argmax(dim=1) == out.argmax(dim=1)).float().mean()),
        "max_abs_logit_diff": float((ref - out).abs().max()),
    }
