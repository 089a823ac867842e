"""``python -m benchmarks formats``: the model in every format this machine runs, as one table.

Each row (``formats_rows``) is exported with the project's own exporters (a dynamic H x W, so one
file serves every size; INT8 calibrated on ``--calib-frames`` train frames of ``--data``), loaded
with the deployment runtime's backends, and measured three ways:

* accuracy: mIoU and VPQ on the val split (every ``img_all`` frame labelled by
  ``vsda_deploy.pipeline.label_predictor``, as ``vsda-infer --smooth none`` labels it: at the model's
  trained scale, the checkpoint's ``eval_size`` or else the frames' own size), and the export
  tolerances of ``export.parity``
  (max |Δlogits|, argmax agreement on parity frames, mIoU change) against the FP32 reference:
  the checkpoint in PyTorch on the CPU, or, for an ONNX ``--model``, that file on ONNX Runtime's CPU
  provider. Within tolerance ✅, outside ❎ with the numbers;
* latency: batch 1, a real val frame made into an input of each ``--sizes`` by
  ``vsda_deploy.pipeline.model_input`` (the model's normalisation), ``predict`` of the row's
  ``vsda_deploy.backends`` segmenter including its host/device copies, timed in two interleaved passes
  (every row once, then every row again, half the runs each); a row whose passes disagree beyond
  their spread gets a note, because then the machine, not the format, moved the number;
* anything that raises inside a row makes that row ❌ with the first line of the error.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.suite import (
    FAILED,
    INACCURATE,
    Column,
    Row,
    SuiteOptions,
    SuiteResult,
    agree,
    classify,
    dataset_root,
    failed_row,
    latency_stats,
    new_result,
    time_calls,
)
from benchmarks.suites.formats_rows import Exports, Format, Loaded, Plan, build_formats
from vsda_deploy.errors import VsdaError

PARITY_FRAMES = 8  # val frames compared logit by logit (as vsda-export checks its files)


def columns(sizes: tuple[tuple[int, int], ...]) -> list[Column]:
    """Return the table's columns: Size MB, mIoU, VPQ, then ms p50 and FPS per size."""
    cols = [Column("size_mb", "Size MB"), Column("miou", "mIoU", "{:.2f}"), Column("vpq", "VPQ", "{:.2f}")]
    for h, w in sizes:
        cols += [Column(f"{h}x{w}_p50", f"ms p50 {h}x{w}", "{:.2f}"), Column(f"{h}x{w}_fps", f"FPS {h}x{w}")]
    return cols


# --- the model and its reference ---------------------------------------------------------------

def load_source(path: Path, frame_size: tuple[int, int]) -> tuple[Any, Any]:
    """Return ``(ModelMeta, eval torch model or None)`` of a checkpoint or ONNX ``--model``; SystemExit if unusable.

    A checkpoint's trained scale is its ``eval_size``, else ``frame_size`` (the val frames' own size).
    """
    if not path.is_file():
        raise SystemExit(f"error: --model {path}: not found (run `make demo`, or give a checkpoint or ONNX file)")
    try:
        if path.suffix.lower() == ".onnx":
            import onnx
            from vsda_export.onnx_export import read_meta

            return read_meta(onnx.load(str(path), load_external_data=False), str(path)), None
        from vsda_export.onnx_export import load_for_export, model_meta

        from vsda_deploy.model_meta import checkpoint_eval_size

        model, ckpt = load_for_export(path)
        return model_meta(model, ckpt, path, checkpoint_eval_size(ckpt) or frame_size, dynamic=True), model
    except (VsdaError, OSError) as e:  # ExportError / CheckpointError / ModelError (no metadata) name the file
        raise SystemExit(f"error: --model {e}") from None


@dataclass
class Reference:
    """The FP32 reference: its logits on the parity frames, and its scores on the val split."""

    name: str
    logits: Callable[[np.ndarray], np.ndarray]
    inputs: list[np.ndarray]
    expected: list[np.ndarray]
    size: tuple[int, int]  # the frames' own size (H, W)
    scores: Any  # vsda_deploy.evaluation.EvalResult
    frame: np.ndarray  # the first val frame (RGB), timed at every size


def val_frames(data: str) -> list[np.ndarray]:
    """Return the parity frames: ``PARITY_FRAMES`` val frames spread over the split (RGB)."""
    from vsda_export.precision import open_frames, spread

    frames = open_frames(data, split="val")
    return list(frames.read(spread(len(frames), PARITY_FRAMES)))


def make_reference(model_path: Path, meta: Any, model: Any, rgbs: list[np.ndarray], root: Path,
                   threads: int) -> Reference:
    """Return the reference: PyTorch FP32 on the CPU, or the FP32 ONNX on ORT CPU when there is no checkpoint."""
    from vsda_export.parity import reference_segmenter

    from vsda_deploy.backends import OrtSegmenter
    from vsda_deploy.evaluation import evaluate_predictor
    from vsda_deploy.pipeline import label_predictor, model_input

    segmenter = OrtSegmenter(model_path, "cpu", "cpu", threads) if model is None else reference_segmenter(model, meta)
    size = None if meta.dynamic else tuple(meta.input_size)
    inputs = [model_input(rgb, size, meta.normalization) for rgb in rgbs]
    scores = evaluate_predictor(label_predictor(segmenter), root, "val")
    name = "the FP32 ONNX on ORT CPU" if model is None else "PyTorch FP32 on the CPU"
    return Reference(name, segmenter.predict, inputs, [segmenter.predict(x) for x in inputs], rgbs[0].shape[:2],
                     scores, rgbs[0])


def accuracy(fmt: Format, segmenter: Any, ref: Reference, root: Path) -> tuple[dict[str, float], list[str]]:
    """Return the row's accuracy values (mIoU, VPQ, agreement, max |Δ|) and its tolerance failures."""
    from vsda_export.parity import TOLERANCES, ParityRow, check_row, compare_logits

    from vsda_deploy.evaluation import evaluate_predictor
    from vsda_deploy.pipeline import label_predictor

    max_abs, agreement = compare_logits(ref.logits, segmenter.predict, ref.inputs, ref.expected)
    scores = ref.scores if fmt.twin else evaluate_predictor(label_predictor(segmenter), root, "val")
    check = ParityRow("", fmt.precision, ref.size, len(ref.inputs), max_abs, agreement, scores.miou,
                      ref.scores.miou)
    # check_row prefixes "<file> at HxW: "; the row already says which file
    failures = [f.split(": ", 1)[-1] for f in check_row(check, TOLERANCES[fmt.precision])]
    values = {"miou": float(scores.miou), "vpq": float(scores.vpq.vpq()), "agreement": agreement,
              "max_abs": max_abs}
    return values, failures


def prepare(fmt: Format, ref: Reference, root: Path) -> tuple[Row, Loaded | None]:
    """Return the row after loading and scoring the format, and the loaded format (None when ❌)."""
    try:
        loaded = fmt.load()
    except Exception as e:  # a format that cannot load is that row's ❌, never the suite's end
        return failed_row(fmt.name, e), None
    try:
        values, failures = accuracy(fmt, loaded.segmenter, ref, root)
    except Exception as e:  # as above: the first line of the error is the reason
        loaded.segmenter.close()
        return failed_row(fmt.name, e), None
    status, reason = classify(failures)
    return Row(fmt.name, status, reason, {"size_mb": loaded.size_mb, **values}), loaded


# --- latency -----------------------------------------------------------------------------------

def _sync(loaded: Loaded) -> Callable[[], Any] | None:
    if not loaded.cuda:
        return None
    import torch

    return torch.cuda.synchronize if torch.cuda.is_available() else None


def time_rows(result: SuiteResult, loaded: dict[int, Loaded], inputs: dict[tuple[int, int], np.ndarray],
              runs: int, warmup: int) -> None:
    """Time every loaded row at every size in two interleaved passes; store p50, IQR and FPS per size.

    A row that raises while timed becomes ❌; one whose two passes do not agree gets a note.
    """
    halves = [n for n in (runs - runs // 2, runs // 2) if n > 0]
    times: dict[tuple[int, tuple[int, int]], list[list[float]]] = {}
    for runs_now in halves:
        for i, ld in list(loaded.items()):
            try:
                for size, x in inputs.items():
                    fn = functools.partial(ld.segmenter.predict, x)
                    times.setdefault((i, size), []).append(time_calls(fn, runs_now, warmup, _sync(ld)))
            except Exception as e:  # e.g. a static graph asked for another size
                result.rows[i] = failed_row(result.rows[i].name, e)
                loaded.pop(i).segmenter.close()
    for i in loaded:
        row = result.rows[i]
        for (h, w) in inputs:
            passes = times[(i, (h, w))]
            stats = latency_stats([t for p in passes for t in p])
            row.values.update({f"{h}x{w}_p50": stats["p50"], f"{h}x{w}_iqr": stats["iqr"],
                               f"{h}x{w}_fps": stats["fps"]})
            if len(passes) == 2:
                a, b = latency_stats(passes[0]), latency_stats(passes[1])
                if not agree(a, b):
                    result.notes.append(
                        f"{row.name} at {h}x{w}: the two timing passes disagree (p50 {a['p50']:.2f} vs "
                        f"{b['p50']:.2f} ms, IQR {a['iqr']:.2f} / {b['iqr']:.2f}): something besides the format "
                        "moved the timing; re-run before claiming a difference")


# --- the suite ---------------------------------------------------------------------------------

@contextlib.contextmanager
def torch_settings(threads: int, device: str) -> Iterator[None]:
    """Run torch on ``threads`` CPU threads, and FP32 as FP32 on a GPU (no TF32), restoring both after."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.set_num_threads(threads)
    if device.startswith("cuda"):  # TF32 convolutions would fail the FP32 tolerance for a wrong reason
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def _engine_sizes(sizes: list[tuple[int, int]]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Return the (min, max) HxW a TensorRT profile needs to run every size."""
    return (min(h for h, _ in sizes), min(w for _, w in sizes)), (max(h for h, _ in sizes), max(w for _, w in sizes))


def run(opts: SuiteOptions, calib_frames: int = 64, compile_: bool | None = None,
        folder: str | Path | None = None) -> SuiteResult:
    """Return the formats table of ``opts.model`` on this machine (files exported into ``folder`` or a temp one)."""
    root = dataset_root(opts.data)
    threads = opts.threads or os.cpu_count() or 1
    result = new_result("formats", columns(opts.sizes),
                        {**opts.settings(), "calib_frames": calib_frames, "compile": compile_})
    result.extra["name_header"] = "Format"
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch_settings(threads, opts.device))
        work = Path(folder) if folder else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vsda-fmt-")))
        work.mkdir(parents=True, exist_ok=True)
        model_path = Path(opts.model)
        rgbs = val_frames(opts.data)
        meta, model = load_source(model_path, rgbs[0].shape[:2])
        ref = make_reference(model_path, meta, model, rgbs, root, threads)
        gpu = opts.device if opts.device.startswith("cuda") else "cuda:0"
        plan = Plan(model_path, work, opts.data, calib_frames, opts.device, gpu, threads, compile_,
                    _engine_sizes([*opts.sizes, ref.size, tuple(meta.input_size)]))
        loaded: dict[int, Loaded] = {}
        for i, fmt in enumerate(build_formats(plan, Exports(plan, model, meta))):
            row, ld = prepare(fmt, ref, root)
            result.rows.append(row)
            if ld is not None:
                loaded[i] = ld
        from vsda_deploy.pipeline import model_input

        inputs = {size: model_input(ref.frame, size, meta.normalization) for size in opts.sizes}
        try:
            time_rows(result, loaded, inputs, opts.runs, opts.warmup)
        finally:
            for ld in loaded.values():
                ld.segmenter.close()
    result.notes[:0] = _method_notes(ref, len(ref.inputs), tuple(meta.input_size))
    return result


def _method_notes(ref: Reference, frames: int, scale: tuple[int, int]) -> list[str]:
    h, w = ref.size
    return [f"accuracy vs {ref.name}: export.parity tolerances on {frames} val frames at {h}x{w} "
            "(max |Δlogits|, argmax agreement) and the mIoU change; mIoU / VPQ on every val frame labelled as "
            f"vsda-infer labels it (at the model's scale, {scale[0]}x{scale[1]})",
            "Size MB: the file each runtime loads; PyTorch rows: the weights in memory (FP32 or FP16)"]


# --- plot --------------------------------------------------------------------------------------

MARKERS = "os^Dv<>"


def _point_labels(points: list[tuple[float, float, int]], y_near: float) -> list[tuple[float, float, str]]:
    """Return one label per cluster of points: numbers joined where points (nearly) coincide.

    Near means within 6 % in latency and ``y_near`` in mIoU; one label then reads ``5,9``.
    """
    labels: list[tuple[float, float, str]] = []
    for x, y, n in sorted(points):
        if labels and x <= labels[-1][0] * 1.06 and abs(y - labels[-1][1]) <= y_near:
            lx, ly, text = labels[-1]
            labels[-1] = (lx, ly, f"{text},{n}")
        else:
            labels.append((x, y, str(n)))
    return labels


def plot(result: SuiteResult, path: Path) -> Path:
    """Write latency (ms p50, log) against mIoU for every ✅ / ❎ format, one marker per size; return the path.

    Each point carries its row's number in the table and a key beside the axes names the formats: many
    formats share one mIoU (FP32 everywhere), so names written at the points would overlap.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(n, r) for n, r in enumerate(result.rows, 1) if r.status != FAILED and r.values.get("miou") is not None]
    sizes = [s for s in result.settings.get("sizes", []) if any(f"{s}_p50" in r.values for _, r in rows)]
    fig, ax = plt.subplots(figsize=(12, 6))
    mious = [r.values["miou"] for _, r in rows]
    y_near = 0.03 * (max(mious) - min(mious)) if mious else 0.0  # 3 % of the axis: the markers overlap
    for k, size in enumerate(sizes):
        marker, colour = MARKERS[k % len(MARKERS)], f"C{k}"
        points = [(r.values[f"{size}_p50"], r.values["miou"], n, r) for n, r in rows if r.values.get(f"{size}_p50")]
        for x, y, _, r in points:
            ax.scatter([x], [y], marker=marker, s=50, color=colour, zorder=3,
                       facecolors="none" if r.status == INACCURATE else colour)
        for x, y, text in _point_labels([(x, y, n) for x, y, n, _ in points], y_near):
            ax.annotate(text, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8)
        ax.scatter([], [], marker=marker, color=colour, label=f"input {size}")
    if any(r.status == INACCURATE for _, r in rows):
        ax.scatter([], [], marker="o", facecolors="none", color="0.3", label="hollow: outside its tolerance")
    if sizes:
        ax.set_xscale("log")
        ax.legend(loc="best", fontsize=8)
        ax.margins(x=0.15, y=0.15)
    else:
        ax.text(0.5, 0.5, "no format ran", ha="center", va="center", transform=ax.transAxes)
    key = [f"{n:>2}  {r.name}" + (" *" if r.status == INACCURATE else "") for n, r in rows]
    if any(r.status == INACCURATE for _, r in rows):
        key += ["", " *  outside its tolerance", "    (hollow marker)"]
    fig.text(0.635, 0.88, "\n".join(key), va="top", ha="left", fontsize=8, family="monospace")
    ax.set_xlabel("latency per frame, ms (p50, batch 1, log scale)")
    ax.set_ylabel("mIoU on the val split, %")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"vsda formats: latency vs accuracy\n{result.machine.get('summary', '')}", fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.62, top=0.88, bottom=0.1)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
