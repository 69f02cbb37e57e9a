"""The fine-tuning report: per-class metrics from a confusion matrix, then report.json and an offline report.html.

Compute, then draw: ``classification_metrics`` and ``finetune_report`` return
plain data (no plotly, no scikit-learn); ``finetune_html`` only draws it, in
the dashboard's style, with plotly.js embedded so the page opens offline.
Element ids (for tests): ``topline``, ``summary``, ``curves``, ``confusion``,
``per-class``, ``quantization`` (``quantization-table``, ``quantization-per-class``);
when measured, ``protocols`` (1 clip against N clips x crops), ``before-after-table`` and
``before-after-per-class`` (linear probe against fine-tuned), ``rounds-table`` (continual rounds).

An optional ``quantization`` entry of the report (int8 against fp32) is drawn
when present (``particle-nas finetune --quantize int8`` writes it)::

    {"backend": "onnxruntime", "size_bytes": {"fp32": ..., "int8": ...},
     "latency_ms": {"fp32": ..., "int8": ...}, "top1": {"fp32": ..., "int8": ...},
     # optional: "top5" and "weight_bytes": {"fp32", "int8"}, "confusion" (int8, [true][predicted]; per-class
     # metrics are added from it), "file", "calibration_clips", "compared_clips",
     # "top1_agreement", "max_abs_logit_diff", "latency_ms": {"fp32_onnxruntime"}}
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ._dashboard_page import _CSS, _SORT_JS, _div
from ._files import atomic_write
from ._plots import _plotly, human, plotly_text

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
QUANTIZATION_KEYS = ("size_bytes", "latency_ms", "top1")  # required, each {"fp32": ..., "int8": ...}
_QUANTIZATION_ROWS = ("size_bytes", "weight_bytes", "latency_ms", "top1", "top5")  # drawn when present


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall, F1 and support of one class (or an average over classes)."""

    name: str
    precision: float  # of the clips predicted as this class, the share that are (0 when none is predicted)
    recall: float  # of the clips of this class, the share predicted as it (0 when it has none)
    f1: float  # harmonic mean of precision and recall (0 when both are 0)
    support: int  # clips of this class


@dataclass(frozen=True)
class Classification:
    per_class: tuple[ClassMetrics, ...]
    macro: ClassMetrics  # unweighted mean over the classes
    weighted: ClassMetrics  # mean weighted by support
    accuracy: float  # trace / total


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def classification_metrics(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> Classification:
    """Per-class precision / recall / F1 / support and their macro and weighted averages.

    ``confusion[i][j]`` counts clips of true class i predicted as class j.
    Undefined ratios (no clip predicted as a class, no clip of a class) count
    as 0, as scikit-learn's ``zero_division=0`` does.
    """
    n = len(class_names)
    rows = [list(map(int, row)) for row in confusion]
    if len(rows) != n or any(len(row) != n for row in rows) or any(v < 0 for row in rows for v in row):
        raise ValueError(f"confusion must be a {n}x{n} matrix of counts (one row and column per class), but got {rows!r}"[:300] + ".")
    total = sum(map(sum, rows))
    per_class = []
    for i, name in enumerate(class_names):
        hit = rows[i][i]
        predicted = sum(rows[r][i] for r in range(n))
        support = sum(rows[i])
        precision, recall = _ratio(hit, predicted), _ratio(hit, support)
        per_class.append(ClassMetrics(name=name, precision=precision, recall=recall, f1=_ratio(2 * precision * recall, precision + recall), support=support))

    def mean(weights: list[float], label: str) -> ClassMetrics:
        norm = sum(weights)
        return ClassMetrics(
            name=label,
            precision=_ratio(sum(w * c.precision for w, c in zip(weights, per_class)), norm),
            recall=_ratio(sum(w * c.recall for w, c in zip(weights, per_class)), norm),
            f1=_ratio(sum(w * c.f1 for w, c in zip(weights, per_class)), norm),
            support=total,
        )

    return Classification(
        per_class=tuple(per_class),
        macro=mean([1.0] * n, "macro avg"),
        weighted=mean([float(c.support) for c in per_class], "weighted avg"),
        accuracy=_ratio(sum(rows[i][i] for i in range(n)), total),
    )


def finetune_report(fields: dict[str, Any]) -> dict[str, Any]:
    """The report: ``fields`` (what the run measured, see docs/finetune.md) plus the per-class metrics of its confusion matrix."""
    for key in ("confusion", "class_names", "epochs", "top1", "params"):
        if key not in fields:
            raise ValueError(f"a fine-tuning report must have {key!r}, but got fields {sorted(fields)}.")
    report = {**fields, **_per_class(fields["confusion"], fields["class_names"])}
    quant = fields.get("quantization")
    if isinstance(quant, dict) and "confusion" in quant and "per_class" not in quant:
        report["quantization"] = {**quant, **_per_class(quant["confusion"], fields["class_names"])}
    return report


def _per_class(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> dict[str, Any]:
    metrics = classification_metrics(confusion, class_names)
    return {"per_class": [asdict(c) for c in metrics.per_class], "macro": asdict(metrics.macro), "weighted": asdict(metrics.weighted)}


def topline(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The page's first line, as (key, label, text): top-1 and size, fp32 against int8, and the share of parameters trained."""
    quant = report.get("quantization") or {}
    params = report["params"]
    if quant:
        top1, size = quant["top1"], quant["size_bytes"]
        top1_text = f"{float(top1['fp32']):.4f} fp32 \u2192 {float(top1['int8']):.4f} int8"
        ratio = f" ({float(size['int8']) / float(size['fp32']):.2g}x)" if size.get("fp32") else ""
        size_text = f"{human(size['fp32'], 'B')} fp32 \u2192 {human(size['int8'], 'B')} int8{ratio}"
        if quant.get("weight_bytes"):
            size_text += f"; weights {human(quant['weight_bytes']['fp32'], 'B')} \u2192 {human(quant['weight_bytes']['int8'], 'B')}"
    else:
        top1_text, size_text = f"{float(report['top1']):.4f} fp32 (int8 not measured)", "int8 not measured (--quantize int8)"
    trained = f"{params['ratio']:.2%} of the parameters ({params['trainable']:,} of {params['total']:,})"
    return [("top1", "top-1", top1_text), ("size", "size", size_text), ("trainable", "trains", trained)]


# ---------------------------------------------------------------- drawing
def curves_figure(epochs: list[dict[str, Any]], *, best_epoch: int | None):
    go = _plotly()
    from plotly.subplots import make_subplots

    x = [e["epoch"] for e in epochs]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=x, y=[e["train_loss"] for e in epochs], mode="lines+markers", name="train loss", line=dict(color="#1f77b4")), secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=[e["val_top1"] for e in epochs], mode="lines+markers", name="validation top-1", line=dict(color="#d62728")), secondary_y=True)
    if best_epoch:
        best = next((e for e in epochs if e["epoch"] == best_epoch), None)
        if best is not None:
            fig.add_trace(go.Scatter(x=[best_epoch], y=[best["val_top1"]], mode="markers", name="best (kept)", marker=dict(symbol="star", size=16, color="gold", line=dict(color="black", width=1))), secondary_y=True)
    fig.update_layout(template="plotly_white", height=380, margin=dict(l=60, r=60, t=20, b=50), legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="mean training loss", secondary_y=False)
    fig.update_yaxes(title_text="validation top-1", range=[0, 1.02], tickmode="linear", tick0=0, dtick=0.2, showgrid=False, secondary_y=True)
    return fig


def confusion_figure(confusion: list[list[int]], class_names: list[str]):
    go = _plotly()
    rows = [sum(r) for r in confusion]
    share = [[v / rows[i] if rows[i] else 0.0 for v in r] for i, r in enumerate(confusion)]
    labels = [plotly_text(name) for name in class_names]  # folder names of someone's dataset
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=labels,
            y=labels,
            customdata=confusion,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar=dict(title="share of row"),
            hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} clips (%{z:.1%} of the class)<extra></extra>",
            text=confusion if len(class_names) <= 30 else None,
            texttemplate="%{text}" if len(class_names) <= 30 else None,
        )
    )
    size = min(900, 260 + 22 * len(class_names))
    fig.update_layout(template="plotly_white", height=size, margin=dict(l=120, r=20, t=20, b=120), xaxis_title="predicted class", yaxis_title="true class")
    fig.update_yaxes(autorange="reversed")
    return fig


def _table(table_id: str, header: list[str], rows: list[list[tuple[Any, str]]]) -> str:
    head = "".join(f'<th data-col="{i}" title="click to sort">{html.escape(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td data-sort="{html.escape(str(sort), quote=True)}">{html.escape(text)}</td>' for sort, text in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}" class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _metric_row(c: dict[str, Any]) -> list[tuple[Any, str]]:
    return [(c["name"], c["name"]), (c["precision"], f"{c['precision']:.4f}"), (c["recall"], f"{c['recall']:.4f}"), (c["f1"], f"{c['f1']:.4f}"), (c["support"], str(c["support"]))]


def quantization_section(quant: dict[str, Any] | None) -> str:
    if not quant:
        return (
            '<section class="wide" id="quantization"><h2>int8 quantization</h2><p class="note">Not measured for this run. '
            "When the report holds a <code>quantization</code> entry (size, CPU latency and top-1 of the fp32 and int8 models), it is shown here.</p></section>"
        )
    fmt = {"size_bytes": lambda v: human(v, "B"), "weight_bytes": lambda v: human(v, "B"), "latency_ms": lambda v: f"{float(v):.3g} ms", "top1": lambda v: f"{float(v):.4f}", "top5": lambda v: f"{float(v):.4f}"}
    rows = []
    for key in _QUANTIZATION_ROWS:
        values = quant.get(key)
        if not values:
            continue
        fp32, int8 = values.get("fp32"), values.get("int8")
        change = f"{float(int8) / float(fp32):.3g}x" if fp32 and int8 is not None else ""
        rows.append([(key, key), (fp32 or "", "" if fp32 is None else fmt[key](fp32)), (int8 or "", "" if int8 is None else fmt[key](int8)), (change, change)])
    notes = [f"Backend {html.escape(str(quant.get('backend', '')))}; int8 / fp32 in the last column."]
    if quant.get("file"):
        notes.append(f"The int8 model: <code>{html.escape(str(quant['file']))}</code> (<code>particle_nas.evaluators.load_int8</code> reads it), calibrated on {html.escape(str(quant.get('calibration_clips', '?')))} training clips.")
    notes.append("size_bytes: bytes of the ONNX files; weight_bytes: of their stored tensors alone (int8 weights, int32 biases, scales and zero points against float32; the graph and its names are left out). Latency: median batch-1 forward on the CPU (fp32 in PyTorch, int8 in ONNX Runtime" + (f"; fp32 in ONNX Runtime {float(quant['latency_ms']['fp32_onnxruntime']):.3g} ms" if "fp32_onnxruntime" in quant["latency_ms"] else "") + ").")
    if "top1_agreement" in quant:
        notes.append(f"Same top-1 class as fp32 on {float(quant['top1_agreement']):.1%} of {html.escape(str(quant.get('compared_clips', '?')))} validation clips (largest logit difference {float(quant.get('max_abs_logit_diff', float('nan'))):.3g}).")
    per_class = ""
    if quant.get("per_class"):
        per_class = (
            '<p class="note">The int8 model, per class, on the validation videos:</p>'
            + _table("quantization-per-class", ["class", "precision", "recall", "F1", "support"], [_metric_row(c) for c in quant["per_class"]] + [_metric_row(quant["macro"])])
        )
    return f'<section class="wide" id="quantization"><h2>int8 quantization</h2><p class="note">{" ".join(notes)}</p>{_table("quantization-table", ["", "fp32", "int8", "int8 / fp32"], rows)}{per_class}</section>'


def _f(value: Any) -> tuple[Any, str]:
    return ("", "") if value is None else (value, f"{float(value):.4f}")


def protocols_section(report: dict[str, Any]) -> str:
    """1 clip against N clips x crops (``protocols``), when more than the 1-clip row was measured."""
    rows = report.get("protocols") or []
    if len(rows) < 2:
        return ""
    table = _table("protocols", ["protocol", "views", "crops", "videos", "top-1", "top-k"], [[(r["name"], r["name"]), (r["views"], str(r["views"])), (r["crops"], str(r["crops"])), (r["videos"], str(r["videos"])), _f(r["top1"]), _f(r.get("top5"))] for r in rows])
    note = "The best epoch on the validation videos: 1 clip (the training clip) against several uniformly spaced clips x spatial crops per video, their softmax averaged (finetune.views, finetune.crops)."
    return f'<section class="wide" id="protocols-section"><h2>test protocols</h2><p class="note">{note}</p>{table}</section>'


def before_after_section(report: dict[str, Any]) -> str:
    """Before (linear probe: only a new head trained) against after (fine-tuned), overall and per class (``before_after``)."""
    ba = report.get("before_after")
    if not ba:
        return ""
    before, after = ba["before"], ba["after"]
    rows = [[("top-1", "top-1"), _f(before["top1"]), _f(after["top1"]), _f(after["top1"] - before["top1"])], [("macro F1", "macro F1"), _f(before["macro_f1"]), _f(after["macro_f1"]), _f(after["macro_f1"] - before["macro_f1"])]]
    per_class = [[(b["name"], b["name"]), _f(b["recall"]), _f(a["recall"]), _f(b["f1"]), _f(a["f1"]), (b["support"], str(b["support"]))] for b, a in zip(before["per_class"], after["per_class"])]
    note = f"Before: {html.escape(before['protocol'])} (the loaded network frozen, a new head trained on the same data and epochs); after: {html.escape(after['protocol'])}."
    return (
        f'<section class="wide" id="before-after"><h2>before and after fine-tuning</h2><p class="note">{note}</p>'
        + _table("before-after-table", ["", "before", "after", "after - before"], rows)
        + _table("before-after-per-class", ["class", "recall before", "recall after", "F1 before", "F1 after", "support"], per_class)
        + "</section>"
    )


def rounds_section(report: dict[str, Any]) -> str:
    """Every fine-tuning round (``rounds``), with each round's top-1 on the previous round's validation set."""
    rounds = report.get("rounds") or []
    if len(rounds) < 2:
        return ""
    rows = []
    for r in rounds:
        pv = r.get("previous_val") or {}
        new = ", ".join(r.get("new_classes") or []) or "-"
        rows.append([(r["round"], str(r["round"])), (r.get("name") or "", str(r.get("name") or "")), (len(r["classes"]), str(len(r["classes"]))), (new, new), (r.get("train_videos") or 0, str(r.get("train_videos"))), _f(r["top1"]), _f(pv.get("top1_before")), _f(pv.get("top1_after")), _f(pv.get("forgetting"))])
    header = ["round", "name", "classes", "new classes", "training videos", "top-1 (own validation)", "previous validation: before", "after", "forgetting"]
    note = "Each round continues the previous one (finetune --from). Previous validation: the previous round's validation videos, scored by the previous network (before) and by this round's (after); forgetting = before - after."
    return f'<section class="wide" id="rounds"><h2>rounds</h2><p class="note">{note}</p>{_table("rounds-table", header, rows)}</section>'


_TOPLINE_CSS = """
#topline { display: flex; flex-wrap: wrap; gap: 10px 28px; margin-top: 8px; font-size: 15px; }
#topline .stat b { font-weight: 600; margin-right: 6px; opacity: 0.8; }
"""


def topline_html(report: dict[str, Any]) -> str:
    stats = "".join(f'<span class="stat" data-key="{key}"><b>{html.escape(label)}</b>{html.escape(text)}</span>' for key, label, text in topline(report))
    return f'<div id="topline">{stats}</div>'


def _weights_note(report: dict[str, Any]) -> str:
    """Where the initial weights came from: a file (inflated from the network's 2D form with --inflate) or the seeded initialization."""
    if not report.get("weights"):
        return "Initial weights: the network's seeded initialization."
    inflated = " (the network's 2D form, inflated by I3D's rule: --inflate)" if report.get("inflated") else ""
    return f'Initial weights: <code>{html.escape(str(report["weights"]))}</code>{inflated}.'


def finetune_html(report: dict[str, Any]) -> str:
    """The report page as one HTML string (plotly.js embedded)."""
    _plotly()
    from plotly.offline import get_plotlyjs

    params = report["params"]
    flops = report.get("flops") or {}
    summary_rows = [
        [("top-1", "validation top-1 (best epoch)"), (report["top1"], f"{report['top1']:.4f}")],
        [("top-k", f"validation top-{report.get('top_k', 5)}"), (report.get("top5", ""), f"{report.get('top5', float('nan')):.4f}")],
        [("best", "best epoch (kept in best.safetensors)"), (report.get("best_epoch", ""), f"{report.get('best_epoch')} of {len(report['epochs'])}")],
        [("trainable", "trainable parameters"), (params["trainable"], f"{params['trainable']:,} of {params['total']:,} ({params['ratio']:.2%})")],
        [("flops", "FLOPs of the network (space.cost)"), (flops.get("network", ""), human(flops.get("network"), "FLOPs"))],
        [("flops_model", "FLOPs of the trained model (fvcore, adapters included)"), (flops.get("trained_model", ""), human(flops.get("trained_model"), "FLOPs"))],
        [("latency", "CPU latency, batch 1 (median)"), (report.get("latency_ms_cpu", ""), f"{report.get('latency_ms_cpu', float('nan')):.3g} ms")],
    ]
    data = report.get("data") or {}
    sections = [
        f'<section id="summary"><h2>result</h2><p class="note">Mode <b>{html.escape(str(report.get("mode")))}</b>; '
        f"{html.escape(str(data.get('train_videos', '?')))} training and {html.escape(str(data.get('val_videos', '?')))} validation videos, {len(report['class_names'])} classes. {_weights_note(report)}</p>"
        + _table("summary-table", ["", "value"], summary_rows)
        + "</section>",
        f'<section><h2>training curves</h2><p class="note">Mean training loss and validation top-1 after each epoch; the star is the epoch kept.</p>{_div(curves_figure(report["epochs"], best_epoch=report.get("best_epoch")), "curves")}</section>',
        f'<section class="wide"><h2>confusion matrix</h2><p class="note">Rows: true class; columns: predicted class; colour: share of the row, numbers: clips.</p>{_div(confusion_figure(report["confusion"], report["class_names"]), "confusion")}</section>',
        '<section class="wide"><h2>per class</h2><p class="note">Precision, recall, F1 and support of each class on the validation videos, with macro (mean over classes) and weighted (by support) averages. Click a header to sort.</p>'
        + _table("per-class", ["class", "precision", "recall", "F1", "support"], [_metric_row(c) for c in report["per_class"]])
        + _table("averages", ["average", "precision", "recall", "F1", "support"], [_metric_row(report["macro"]), _metric_row(report["weighted"])])
        + "</section>",
        protocols_section(report),
        before_after_section(report),
        rounds_section(report),
        quantization_section(report.get("quantization")),
    ]
    title = f"particle-nas fine-tuning: {report.get('name', '')}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}{_TOPLINE_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<header><h1>{html.escape(title)}</h1>{topline_html(report)}</header>"
        f"<main>{''.join(sections)}</main><script>{_SORT_JS}</script>"
        "</body></html>\n"
    )


def write_finetune_report(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``report`` (from ``finetune_report``) as ``out_dir/report.json`` and ``out_dir/report.html``, atomically.

    A report without ``per_class`` is completed by ``finetune_report`` first;
    an optional ``quantization`` entry is drawn in its own section.
    """
    if "per_class" not in report:
        report = finetune_report(report)
    quant = report.get("quantization")
    if quant is not None and (not isinstance(quant, dict) or not all(isinstance(quant.get(k), dict) for k in QUANTIZATION_KEYS)):
        raise ValueError(f"report.quantization must map each of {list(QUANTIZATION_KEYS)} to {{'fp32': ..., 'int8': ...}}, but got {quant!r}"[:300] + ".")
    out = Path(out_dir)
    text = json.dumps(report, indent=2, default=str)
    page = finetune_html(report)
    json_path = atomic_write(out / REPORT_JSON, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
    html_path = atomic_write(out / REPORT_HTML, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return json_path, html_path
