"""Parity of exported files against PyTorch on real frames: max |Δlogits|, argmax agreement, mIoU change.

The check runs what users run: each file is loaded by ``vsda_deploy.backends`` (an ONNX file on ONNX
Runtime's CPU provider, a TensorRT ``.engine`` by ``TrtSegmenter`` on the GPU), the PyTorch model is
wrapped as a ``TorchSegmenter``, and frames become inputs through ``vsda_deploy.pipeline.model_input``
(the model's own normalisation), at each size asked (the export size, and a second one for a dynamic
graph). With a labelled Cityscapes-VPS split each file also labels the split through
``vsda_deploy.pipeline.label_predictor``, exactly as ``vsda-infer --smooth none`` does (at the model's
trained scale, logits resized back bilinearly), and is scored by
``vsda_deploy.evaluation.evaluate_predictor``; its mIoU change is against PyTorch's under the same protocol.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vsda_deploy.backends import Segmenter, TorchSegmenter, load_segmenter
from vsda_deploy.model_meta import ModelMeta
from vsda_deploy.pipeline import label_predictor, model_input

LogitsFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Tolerance:
    """What an exported file must meet: max |Δlogits|, agreement (%) and mIoU change (points)."""

    max_abs: float | None = None
    agreement: float = 0.0
    miou_change: float | None = None  # |ΔmIoU| bound
    miou_drop: float | None = None  # bound on a drop only (a gain is fine)


TOLERANCES = {
    "fp32": Tolerance(max_abs=1e-4, agreement=99.99),
    "fp16": Tolerance(agreement=99.5, miou_change=0.3),
    "int8": Tolerance(agreement=98.0, miou_drop=1.0),
}


@dataclass
class ParityRow:
    """Parity of one file at one input size (mIoU on the row of the file's first size)."""

    file: str
    precision: str
    size: tuple[int, int]
    frames: int
    max_abs: float
    agreement: float  # percent of pixels whose argmax class matches PyTorch
    miou: float | None = None
    miou_reference: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def miou_change(self) -> float | None:
        if self.miou is None or self.miou_reference is None:
            return None
        return self.miou - self.miou_reference

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = f"{self.size[0]}x{self.size[1]}"
        data["miou_change"] = self.miou_change
        data["passed"] = not self.failures
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def reference_segmenter(model: Any, meta: ModelMeta) -> Segmenter:
    """Return the PyTorch model (eval mode, CPU) as a ``Segmenter`` carrying ``meta``."""
    return TorchSegmenter("PyTorch", module=model, meta=meta)


def file_segmenter(path: str | Path, threads: int = 0) -> Segmenter:
    """Return the ``Segmenter`` of an exported file: ONNX Runtime on the CPU, or a TensorRT engine on cuda:0."""
    if Path(path).suffix == ".engine":
        return load_segmenter(path, "trt", "cuda:0")
    return load_segmenter(path, "ort", "cpu", provider="cpu", threads=threads)


def compare_logits(reference: LogitsFn, candidate: LogitsFn, inputs: Sequence[np.ndarray],
                   expected: Sequence[np.ndarray] | None = None) -> tuple[float, float]:
    """Return ``(max |Δlogits|, argmax agreement %)`` of ``candidate`` vs ``reference`` over ``inputs``."""
    max_abs, same, total = 0.0, 0, 0
    for i, x in enumerate(inputs):
        ref = expected[i] if expected is not None else reference(x)
        out = candidate(x)
        if out.shape != ref.shape:
            raise ValueError(f"output shape {out.shape} differs from PyTorch's {ref.shape}")
        max_abs = max(max_abs, float(np.abs(out.astype(np.float32) - ref).max()))
        same += int((out.argmax(1) == ref.argmax(1)).sum())
        total += ref.shape[0] * ref.shape[2] * ref.shape[3]
    return max_abs, 100.0 * same / max(total, 1)


def split_miou(predict: Callable[[np.ndarray], np.ndarray], gt_root: str | Path, split: str = "val") -> float:
    """Return the mIoU (%) of ``predict`` on the labelled frames of a Cityscapes-VPS split."""
    from vsda_deploy.evaluation import evaluate_predictor

    return float(evaluate_predictor(predict, gt_root, split, every_frame=False).miou)


def check_row(row: ParityRow, tol: Tolerance) -> list[str]:
    """Return the tolerance failures of one row, each with the numbers."""
    tag = f"{Path(row.file).name} at {row.size[0]}x{row.size[1]}"
    failures = []
    if tol.max_abs is not None and not row.max_abs <= tol.max_abs:
        failures.append(f"{tag}: max |Δlogits| {row.max_abs:.3g} > {tol.max_abs:g}")
    if not row.agreement >= tol.agreement:
        failures.append(f"{tag}: argmax agreement {row.agreement:.3f}% < {tol.agreement}%")
    change = row.miou_change
    if change is not None and math.isfinite(change):
        if tol.miou_change is not None and abs(change) > tol.miou_change:
            failures.append(f"{tag}: mIoU change {change:+.2f} points (limit ±{tol.miou_change})")
        if tol.miou_drop is not None and -change > tol.miou_drop:
            failures.append(f"{tag}: mIoU drop {-change:.2f} points (limit {tol.miou_drop})")
    return failures


def measure_parity(reference: Segmenter, files: Sequence[tuple[str, Path]], frames: Sequence[np.ndarray],
                   sizes: Sequence[tuple[int, int]], gt_root: str | Path | None = None,
                   threads: int = 0) -> list[ParityRow]:
    """Return one checked ParityRow per (file, size); ``files`` are ``(precision, ONNX or engine path)``."""
    if not frames:
        raise ValueError("parity needs at least one frame")
    norm = reference.meta.normalization
    inputs = {size: [model_input(f, size, norm) for f in frames] for size in sizes}
    expected = {size: [reference.predict(x) for x in xs] for size, xs in inputs.items()}
    ref_miou = split_miou(label_predictor(reference), gt_root) if gt_root is not None else None
    rows = []
    for precision, path in files:
        candidate = file_segmenter(path, threads)
        try:
            for k, size in enumerate(sizes):
                max_abs, agree = compare_logits(reference.predict, candidate.predict, inputs[size], expected[size])
                row = ParityRow(str(path), precision, tuple(size), len(frames), max_abs, agree)
                if k == 0 and gt_root is not None:
                    row.miou, row.miou_reference = split_miou(label_predictor(candidate), gt_root), ref_miou
                row.failures = check_row(row, TOLERANCES[precision])
                rows.append(row)
        finally:
            candidate.close()
    return rows


def parity_sizes(input_size: tuple[int, int], dynamic: bool) -> list[tuple[int, int]]:
    """Return the sizes to check: the export size, plus 3/4 of it (odd sizes welcome) for a dynamic graph."""
    h, w = input_size
    return [(h, w), (max(16, (3 * h) // 4 + 1), max(16, (3 * w) // 4 + 1))] if dynamic else [(h, w)]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def render_table(rows: Sequence[ParityRow], title: str = "parity vs PyTorch") -> Any:
    """Return a Rich table of the rows."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("file", "precision", "size", "frames", "max |Δlogits|", "agreement %", "mIoU", "ΔmIoU", "check"):
        table.add_column(col, justify="left" if col in ("file", "precision") else "right")
    for r in rows:
        table.add_row(Path(r.file).name, r.precision, f"{r.size[0]}x{r.size[1]}", str(r.frames),
                      _fmt(r.max_abs, ".2e"), _fmt(r.agreement, ".3f"), _fmt(r.miou, ".2f"),
                      _fmt(r.miou_change, "+.2f"), "[green]ok[/]" if not r.failures else "[red]FAIL[/]")
    return table


def write_report(rows: Sequence[ParityRow], path: str | Path, **context: Any) -> Path:
    """Write ``parity.json`` (rows, tolerances, failures and ``context``) atomically; return its path."""
    path = Path(path)
    data = {
        **context,
        "tolerances": {k: asdict(v) for k, v in TOLERANCES.items()},
        "rows": [r.to_json() for r in rows],
        "failures": [f for r in rows for f in r.failures],
        "passed": all(not r.failures for r in rows),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return path
