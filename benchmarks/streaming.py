"""End-to-end streaming speed of ``vsda-infer`` for ``--smooth none|ema|flow``: FPS and per-stage p50.

    python -m benchmarks.streaming [--model model.onnx] [--size 256x512] [--frames 150] [--json FILE]

The stream is a synthetic video (a smooth texture panning 3 px per frame) decoded like any
file source, so ``read`` is real decoding. Without ``--model`` a DDRNet-23-slim (width 32,
the edge model; random weights, which do not change its speed) is exported to ONNX in a
temporary folder. Each mode runs through ``run_inference`` exactly as the CLI does; the
target is that flow smoothing costs at most 25% of the frame time (smoothing p50 / total
p50). On a machine with a CUDA GPU the same modes also run with the torch backend in fp16.
"""

from __future__ import annotations

import os
import platform
import tempfile
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from vsda_deploy.cityscapes_vps import dump_json
from vsda_deploy.infer import SMOOTH_WIDTH, STAGES, InferOptions, run_inference
from vsda_deploy.labels import VIPER15
from vsda_deploy.model_meta import ModelMeta
from vsda_deploy.options import parse_hw

MODES = ("none", "ema", "flow")
FLOW_SHARE_TARGET = 0.25


def write_texture_video(path: Path, frames: int, size: tuple[int, int], step: int = 3) -> Path:
    """Write an .avi (MJPG) of a smooth random texture panning ``step`` px per frame; return its path."""
    h, w = size
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (h, w + step * frames, 3), dtype=np.uint8), (0, 0), 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write MJPG video")
    for i in range(frames):
        writer.write(np.ascontiguousarray(texture[:, step * i: step * i + w]))
    writer.release()
    return path


def export_edge_model(folder: Path, size: tuple[int, int]) -> tuple[Path, Path]:
    """Return ``(model.onnx, model.pt)`` of a random-weight DDRNet-23-slim (needs the dev extras)."""
    import onnx
    import torch

    from vsda_train.checkpoint import save_checkpoint
    from vsda_train.models import create_model

    model = create_model("ddrnet23_slim", VIPER15.num_classes).eval()
    ckpt = save_checkpoint(folder / "model.pt", {"model": model.state_dict(), "model_config": model.config,
                                                  "label_space": "viper15"})
    path = folder / "model.onnx"
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, *size), str(path), dynamo=False, input_names=["image"],
                          output_names=["logits"], dynamic_axes=axes, opset_version=17)
    proto = onnx.load(str(path))
    meta = ModelMeta(classes=VIPER15.classes, palette=VIPER15.palette, input_size=size,
                     things=tuple(sorted(VIPER15.things)), model_name="ddrnet23_slim")
    for key, value in meta.to_props().items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, str(path))
    return path, ckpt


def run_mode(source: Path, model: Path, mode: str, frames: int, warmup: int, **options: Any) -> dict[str, Any]:
    """Return one row: FPS, p50 ms of every stage and the smoothing share of the frame time."""
    report = run_inference(InferOptions(str(source), model, smooth=mode, max_frames=frames, warmup=warmup,
                                        **options)).report
    p50 = {stage: report["latency_ms"][stage]["p50"] for stage in STAGES}
    return {"mode": mode, "backend": report["backend"], "device": report["device"],
            "precision": report["precision"], "frames": report["frames"]["processed"], "fps": report["fps"],
            "p50_ms": p50, "smoothing_share": round(p50["smoothing"] / p50["total"], 4)}


def render(rows: list[dict[str, Any]], title: str) -> Table:
    """Return the table: one row per mode and backend, FPS and p50 ms per stage."""
    table = Table(title=title)
    for col in ("smooth", "backend", "FPS", *STAGES, "smoothing / frame"):
        table.add_column(col, justify="left" if col in ("smooth", "backend") else "right")
    for r in rows:
        table.add_row(r["mode"], f"{r['backend']} {r['device']} {r['precision']}", f"{r['fps']:.1f}",
                      *(f"{r['p50_ms'][s]:.1f}" for s in STAGES), f"{100 * r['smoothing_share']:.1f}%")
    return table


def main(
    model: Path | None = typer.Option(None, "--model", help="model to time (default: a random DDRNet-23-slim "
                                      "exported to ONNX)"),
    size: str = typer.Option("256x512", "--size", help="frame size HxW (the model runs at this size)"),
    frames: int = typer.Option(150, "--frames", min=20, help="frames per mode"),
    warmup: int = typer.Option(10, "--warmup", min=0, help="first frames left out of the figures"),
    smooth_width: int = typer.Option(SMOOTH_WIDTH, "--smooth-width", help="smoothing grid width, as vsda-infer's"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the figures to this JSON file"),
) -> None:
    """Time vsda-infer end to end for each smoothing mode (CPU; CUDA + torch fp16 when present)."""
    hw = parse_hw(size, "--size")
    console = Console(width=None if Console().is_terminal else 132)  # the table is wider than 80 columns
    with tempfile.TemporaryDirectory(prefix="vsda-streaming-") as tmp:
        folder = Path(tmp)
        source = write_texture_video(folder / "texture.avi", frames + warmup, hw)
        onnx_path, ckpt = (model, None) if model is not None else export_edge_model(folder, hw)
        rows = [run_mode(source, onnx_path, mode, frames + warmup, warmup, smooth_width=smooth_width)
                for mode in MODES]
        gpu_rows = []
        if ckpt is not None and _cuda_available():
            gpu_rows = [run_mode(source, ckpt, mode, frames + warmup, warmup, device="cuda:0", precision="fp16",
                                 smooth_width=smooth_width) for mode in MODES]
    flow = next(r for r in rows if r["mode"] == "flow")
    ok = flow["smoothing_share"] <= FLOW_SHARE_TARGET
    console.print(render(rows + gpu_rows, f"vsda-infer streaming at {hw[0]}x{hw[1]} (smoothing grid <= "
                                         f"{smooth_width} px wide), {frames} frames per mode, {os.cpu_count()} CPU(s)"))
    console.print(f"flow smoothing: {100 * flow['smoothing_share']:.1f}% of the frame time "
                  f"(target <= {100 * FLOW_SHARE_TARGET:.0f}%): {'ok' if ok else 'OVER TARGET'}")
    if json_out is not None:
        dump_json(json_out, {
            "size": list(hw), "frames": frames, "warmup": warmup, "smooth_width": smooth_width, "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "model": str(model) if model else "ddrnet23_slim (random weights) -> ONNX",
            "rows": rows + gpu_rows, "flow_share_target": FLOW_SHARE_TARGET, "flow_share_ok": ok,
        })
        console.print(f"wrote {json_out}")
    if not ok:
        raise typer.Exit(1)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


if __name__ == "__main__":
    typer.run(main)
