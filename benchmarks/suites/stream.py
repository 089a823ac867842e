"""The ``stream`` suite: ``vsda-infer`` end to end on the labelled val videos for each smoothing mode.

Each row is one ``run_inference`` call exactly as the CLI makes it, on ``--data``'s val split
(the smoother reset at each video, ground truth implied): FPS, p50 / p95 / p99 of every stage,
the smoothing share of the frame time, and the stream's mIoU, VPQ and TC. A checkpoint given
as ``--model`` is exported to an FP32 ONNX first (the edge path); on a CUDA device the
checkpoint also runs through the torch backend in fp16.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmarks.suite import Column, Row, SuiteOptions, SuiteResult, dataset_root, failed_row, new_result
from vsda_deploy.infer import STAGES, InferOptions, run_inference
from vsda_deploy.options import NATIVE

MODES = ("none", "ema", "flow")
FLOW_SHARE_TARGET = 0.25  # flow smoothing may cost at most this share of the frame time at TARGET_SIZE
TARGET_SIZE = (256, 512)
COLUMNS = [Column("fps", "FPS"), Column("total_p50", "total p50 ms", "{:.2f}"),
           Column("total_p95", "p95", "{:.2f}"), Column("total_p99", "p99", "{:.2f}"),
           Column("inference_p50", "inference p50", "{:.2f}"), Column("smoothing_p50", "smoothing p50", "{:.2f}"),
           Column("smoothing_share", "smoothing %", "{:.1f}"), Column("miou", "mIoU", "{:.2f}"),
           Column("vpq", "VPQ"), Column("tc", "TC")]


def stream_row(name: str, options: InferOptions) -> Row:
    """Return one row from one ``run_inference`` call (a failure is a ❌ row naming the error)."""
    try:
        report = run_inference(options).report
    except Exception as exc:
        return failed_row(name, exc)
    values: dict[str, Any] = {"fps": report["fps"], "frames": report["frames"]["processed"]}
    for stage in STAGES:
        for q in ("p50", "p95", "p99"):
            values[f"{stage}_{q}"] = report["latency_ms"][stage][q]
    total = values["total_p50"]
    values["smoothing_share"] = 100 * values["smoothing_p50"] / total if total else None
    metrics = report.get("metrics") or {}
    values.update({k: metrics.get(k) for k in ("miou", "vpq", "tc")})
    values.update({k: report[k] for k in ("backend", "device", "precision")})
    return Row(name, values=values)


def _onnx_model(model: Path, size: tuple[int, int], folder: Path) -> Path:
    """Return an ONNX file for ``model``: itself, or the FP32 export of a checkpoint."""
    if model.suffix.lower() == ".onnx":
        return model
    from vsda_export.onnx_export import export_fp32, load_for_export, model_meta

    net, ckpt = load_for_export(model)
    meta = model_meta(net, ckpt, model, size, dynamic=True)
    return export_fp32(net, folder / "model.onnx", meta)


def run(opts: SuiteOptions) -> SuiteResult:
    """Run every smoothing mode through vsda-infer on the val videos; return the rows."""
    root = dataset_root(opts.data)
    model = Path(opts.model)
    if not model.exists():
        raise SystemExit(f"error: --model {model}: not found (run `make demo` or pass a checkpoint / ONNX)")
    size = opts.sizes[0] if opts.sizes else None  # None: every frame at its own size, as vsda-train eval scores it
    result = new_result("stream", COLUMNS, opts.settings())
    result.extra["name_header"] = "smoothing · backend"
    source = f"cityscapes-vps:{root}"
    common = {"input_size": size or NATIVE, "warmup": opts.warmup, "gt": None}
    with tempfile.TemporaryDirectory(prefix="vsda-stream-") as tmp:
        onnx = _onnx_model(model, size or _frame_size(root), Path(tmp))
        for mode in MODES:
            result.rows.append(stream_row(f"{mode} · ort cpu fp32", InferOptions(source, onnx, smooth=mode, **common)))
        if opts.device.startswith("cuda") and model.suffix == ".pt":
            for mode in MODES:
                result.rows.append(stream_row(f"{mode} · torch {opts.device} fp16", InferOptions(
                    source, model, smooth=mode, device=opts.device, precision="fp16", **common)))
    result.notes += _checks(result.rows, size)
    where = f"resized to the model input {size[0]}x{size[1]}" if size else "at their own size"
    result.notes.append(f"val frames {where}; the first {opts.warmup} frames are left out of the timings")
    return result


def _frame_size(root: Path) -> tuple[int, int]:
    """Return (H, W) of the first val frame (the export's nominal input size)."""
    from vsda_deploy import cityscapes_vps as vps
    from vsda_deploy.evaluation import list_gt

    first = next(iter(list_gt(root, "val").values()))[0]
    return vps.read_rgb_png(first.image).shape[:2]


def _checks(rows: list[Row], size: tuple[int, int] | None) -> list[str]:
    """Return the two checks as notes: flow smoothing's share of the frame (its target is set at 256x512)
    and the TC / mIoU change it brings."""
    by_mode = {r.name.split(" · ")[0]: r.values for r in rows if r.status == "ok" and "ort" in r.name}
    notes = []
    if "flow" in by_mode:
        share = by_mode["flow"]["smoothing_share"]
        line = f"flow smoothing costs {share:.1f}% of the frame time"
        if size == TARGET_SIZE:
            ok = share is not None and share <= 100 * FLOW_SHARE_TARGET
            line += f" (target <= {100 * FLOW_SHARE_TARGET:.0f}% at 256x512): {'met' if ok else 'MISSED'}"
        notes.append(line)
    if {"flow", "none"} <= set(by_mode) and by_mode["none"].get("tc") is not None:
        f, n = by_mode["flow"], by_mode["none"]
        notes.append(f"flow vs none: TC {n['tc']:.1f} -> {f['tc']:.1f} ({f['tc'] - n['tc']:+.1f}), "
                     f"mIoU {n['miou']:.2f} -> {f['miou']:.2f} ({f['miou'] - n['miou']:+.2f})")
    return notes


def plot(result: SuiteResult, path: Path) -> Path | None:
    """Write stacked per-stage p50 bars per row (✅ rows) with FPS at the bar ends; return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.status == "ok"]
    if not rows:
        return None
    stages = [s for s in STAGES if s != "total"]
    fig, ax = plt.subplots(figsize=(9, 1.8 + 0.55 * len(rows)))
    left = [0.0] * len(rows)
    for stage, colour in zip(stages, plt.get_cmap("tab10").colors, strict=False):
        widths = [r.values[f"{stage}_p50"] for r in rows]
        ax.barh(range(len(rows)), widths, left=left, color=colour, label=stage)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for i, r in enumerate(rows):
        ax.text(left[i], i, f"  {r.values['fps']:.0f} FPS, TC {r.values.get('tc') or 0:.1f}", va="center",
                fontsize=8)
    ax.set_yticks(range(len(rows)), [r.name for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, max(left) * 1.45)
    ax.set_xlabel("per-stage p50 latency (ms per frame)")
    ax.set_title(f"vsda-infer streaming · {result.machine.get('summary', '')}", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22 - 0.4 / len(rows)), fontsize=7, ncol=len(stages),
              frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
