from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from browser import chromium_page
from particle_nas.results import classification_metrics, finetune_report, write_finetune_report
from particle_nas.results._finetune_report import topline

# true class per row, predicted class per column; class c has no clip and is predicted once.
CONFUSION = [[4, 1, 1], [2, 2, 0], [0, 0, 0]]
NAMES = ["a", "b", "c"]


def test_per_class_metrics_match_a_hand_computation() -> None:
    m = classification_metrics(CONFUSION, NAMES)
    # predicted as a: 6 (4 right), as b: 3 (2 right), as c: 1 (0 right); supports 6, 4, 0
    expected = {"a": (4 / 6, 4 / 6, 2 / 3, 6), "b": (2 / 3, 2 / 4, 4 / 7, 4), "c": (0.0, 0.0, 0.0, 0)}
    for c in m.per_class:
        p, r, f1, support = expected[c.name]
        assert (c.precision, c.recall, c.f1, c.support) == (pytest.approx(p), pytest.approx(r), pytest.approx(f1), support)
    assert (m.macro.precision, m.macro.recall, m.macro.f1) == (pytest.approx(4 / 9), pytest.approx(7 / 18), pytest.approx(26 / 63))
    assert (m.weighted.precision, m.weighted.recall, m.weighted.f1) == (pytest.approx(2 / 3), pytest.approx(0.6), pytest.approx(22 / 35))
    assert m.macro.support == m.weighted.support == 10 and m.accuracy == pytest.approx(0.6)


def test_a_confusion_matrix_that_does_not_fit_the_classes_is_refused() -> None:
    with pytest.raises(ValueError, match="confusion must be a 3x3 matrix"):
        classification_metrics([[1, 0], [0, 1]], NAMES)
    with pytest.raises(ValueError, match="confusion must be a 2x2 matrix"):
        classification_metrics([[1, -1], [0, 1]], ["x", "y"])


def _fields(**extra) -> dict:
    return {
        "name": "demo",
        "mode": "adapters",
        "class_names": NAMES,
        "confusion": CONFUSION,
        "epochs": [{"epoch": 1, "train_loss": 1.1, "val_top1": 0.4}, {"epoch": 2, "train_loss": 0.9, "val_top1": 0.6}],
        "best_epoch": 2,
        "top1": 0.6,
        "top5": 1.0,
        "top_k": 3,
        "params": {"trainable": 241, "total": 14553, "ratio": 241 / 14553},
        "flops": {"network": 1_000_000, "trained_model": 1_010_000},
        "latency_ms_cpu": 1.5,
        "data": {"train_videos": 9, "val_videos": 10},
        **extra,
    }


def test_report_files_are_self_contained_and_hold_every_section(tmp_path: Path) -> None:
    json_path, html_path = write_finetune_report(_fields(), tmp_path)
    report = json.loads(json_path.read_text())
    assert [c["name"] for c in report["per_class"]] == NAMES and report["macro"]["f1"] == pytest.approx(26 / 63)
    page = html_path.read_text()
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js is inside the page: it opens offline
    assert "Plotly.newPlot" in page and len(page) > 1_000_000
    for element in ('id="summary"', 'id="curves"', 'id="confusion"', 'id="per-class"', 'id="averages"', 'id="quantization"'):
        assert element in page, element
    assert "Not measured for this run" in page
    assert "241 of 14,553 (1.66%)" in page


QUANT = {
    "backend": "onnxruntime",
    "size_bytes": {"fp32": 58_000, "int8": 16_000},
    "weight_bytes": {"fp32": 40_000, "int8": 10_500},
    "latency_ms": {"fp32": 2.0, "int8": 1.0, "fp32_onnxruntime": 1.5},
    "top1": {"fp32": 0.6, "int8": 0.5},
    "top5": {"fp32": 1.0, "int8": 0.9},
    "confusion": [[3, 2, 1], [2, 2, 0], [0, 0, 0]],
}


def test_a_quantization_entry_is_drawn_with_its_own_per_class_table(tmp_path: Path) -> None:
    report = finetune_report(_fields(quantization=QUANT))
    quant = report["quantization"]
    assert [c["recall"] for c in quant["per_class"]] == [pytest.approx(0.5), pytest.approx(0.5), 0.0]  # from the int8 confusion
    assert quant["macro"]["support"] == 10 and report["macro"]["f1"] == pytest.approx(26 / 63)  # the fp32 table is unchanged
    page = write_finetune_report(report, tmp_path)[1].read_text()
    assert 'id="quantization-per-class"' in page and "0.276x" in page and "0.263x" in page and "fp32 in ONNX Runtime 1.5 ms" in page


def test_the_top_line_states_int8_against_fp32_and_the_share_trained() -> None:
    assert topline(finetune_report(_fields(quantization=QUANT))) == [
        ("top1", "top-1", "0.6000 fp32 \u2192 0.5000 int8"),
        ("size", "size", "58 kB fp32 \u2192 16 kB int8 (0.28x); weights 40 kB \u2192 10.5 kB"),
        ("trainable", "trains", "1.66% of the parameters (241 of 14,553)"),
    ]
    assert [text for _, _, text in topline(_fields())][:2] == ["0.6000 fp32 (int8 not measured)", "int8 not measured (--quantize int8)"]


@pytest.mark.parametrize("quantized", [True, False], ids=["int8", "fp32-only"])
def test_the_report_renders_in_chromium_without_errors(tmp_path: Path, quantized: bool) -> None:
    _, html_path = write_finetune_report(_fields(quantization=QUANT if quantized else None), tmp_path / "out")
    with chromium_page(tmp_path / "profile") as page:
        page.goto(html_path.resolve().as_uri(), wait_until="load")
        page.wait_for_function("() => window.Plotly && document.querySelectorAll('.js-plotly-plot').length == 2")
        assert page.js_errors == [] and page.remote_requests == []
        top = page.locator("#topline")
        assert top.is_visible() and top.bounding_box()["y"] < 150  # the first thing on the page
        texts = page.locator("#topline .stat").all_inner_texts()
        assert len(texts) == 3 and "1.66% of the parameters" in texts[2]
        assert ("0.5000 int8" in texts[0]) == quantized and ("16 kB int8" in texts[1]) == quantized
        assert page.locator("#quantization-per-class tbody tr").count() == (4 if quantized else 0)


def test_a_quantization_entry_is_drawn_and_checked(tmp_path: Path) -> None:
    quant = {"backend": "fbgemm", "size_bytes": {"fp32": 58_000, "int8": 16_000}, "latency_ms": {"fp32": 2.0, "int8": 1.0}, "top1": {"fp32": 0.6, "int8": 0.5}}
    _, html_path = write_finetune_report(finetune_report(_fields(quantization=quant)), tmp_path)
    page = html_path.read_text()
    assert 'id="quantization-table"' in page and "fbgemm" in page and "0.276x" in page and "Not measured" not in page
    with pytest.raises(ValueError, match="report.quantization must map each of"):
        write_finetune_report(_fields(quantization={"backend": "fbgemm", "top1": 0.5}), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
