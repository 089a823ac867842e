"""`vsda-infer SOURCE --model MODEL`: streaming segmentation with temporal smoothing (options only).

    vsda-infer camera0 --model model.onnx --show
    vsda-infer clip.mp4 --model model.onnx --save-video overlay.mp4 --report report.json
    vsda-infer cityscapes-vps:data/synth/target --model model.onnx --smooth none --report report.json

Everything happens in :func:`vsda_deploy.infer.run_inference`. Exit status: 0 when the stream
ended or was stopped (Ctrl-C, SIGTERM, ``q`` in the window), 1 for a fault (one line on stderr),
2 for bad options, 130 when interrupted twice.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from vsda_deploy.infer import SMOOTH_WIDTH, InferOptions, parse_size, run_inference
from vsda_deploy.report import render_report
from vsda_deploy.smoothing import DEFAULT_ALPHA

app = typer.Typer(add_completion=False, help="Streaming video segmentation at the edge.")


@app.command()
def main(
    source: str = typer.Argument(..., help="camera0 | 0 | /dev/video0 | video file | image folder or glob | "
                                 "rtsp://, http:// URL | gst:PIPELINE | cityscapes-vps:ROOT | cityscapes-seq:ROOT"),
    model: Path = typer.Option(..., "--model", "-m", help="model.onnx | model.engine (+ .engine.json) | ckpt.pt"),
    backend: str = typer.Option("auto", "--backend", help="auto (from the suffix) | ort | trt | torch"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda:N"),
    provider: str = typer.Option("auto", "--provider", help="ONNX Runtime execution provider: auto | cpu | cuda | "
                                 "tensorrt"),
    precision: str = typer.Option("fp32", "--precision", help="torch backend: fp32 | fp16 (GPU)"),
    input_size: str | None = typer.Option(None, "--input-size", help="run the model at HxW (default: its static "
                                          "input size, else each frame's size)"),
    smooth: str = typer.Option("flow", "--smooth", help="temporal smoothing: flow | ema | none"),
    alpha: float = typer.Option(DEFAULT_ALPHA, "--alpha", help="weight of the (warped) past in smoothing, in [0, 1)"),
    smooth_width: int = typer.Option(SMOOTH_WIDTH, "--smooth-width", help="smooth class probabilities on a grid at "
                                     "most this wide (px), then resize to the frame"),
    gt: str | None = typer.Option(None, "--gt", help="ground truth for live mIoU/VPQ/TC: cityscapes-vps:ROOT | "
                                  "cityscapes-seq:ROOT (frames must be named like the dataset's)"),
    split: str = typer.Option("val", "--split", help="split of a dataset SOURCE or --gt"),
    save_video: Path | None = typer.Option(None, "--save-video", help="overlay video (.mp4, .avi, .mkv)"),
    save_labels: Path | None = typer.Option(None, "--save-labels", help="folder of train-id PNGs named after the "
                                            "frames"),
    panoptic: bool = typer.Option(False, "--panoptic", help="also write Cityscapes-VPS pan_pred/ + pred.json into "
                                  "--save-labels"),
    save_jsonl: Path | None = typer.Option(None, "--save-jsonl", help="one JSON line per frame (latency, classes)"),
    report: Path | None = typer.Option(None, "--report", help="write the report JSON here"),
    show: bool = typer.Option(False, "--show/--no-show", help="show a window (off without a display; q quits)"),
    max_frames: int | None = typer.Option(None, "--max-frames", help="stop after N frames"),
    realtime: bool = typer.Option(False, "--realtime/--no-realtime", help="pace files at their FPS and drop the "
                                  "frames the model misses (live sources always are)"),
    warmup: int = typer.Option(10, "--warmup", help="first N frames left out of latency and FPS"),
) -> None:
    """Segment a video stream: per-stage latency, temporal smoothing, outputs, and metrics with ground truth."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        options = InferOptions(
            source=source, model=model, backend=backend, device=device, provider=provider, precision=precision,
            input_size=parse_size(input_size) if input_size else None, smooth=smooth, alpha=alpha,
            smooth_width=smooth_width, gt=gt,
            split=split, save_video=save_video, save_labels=save_labels, panoptic=panoptic, save_jsonl=save_jsonl,
            report=report, show=show, max_frames=max_frames, realtime=realtime, warmup=warmup,
            live=Console(stderr=True).is_terminal)
        result = run_inference(options)
    except (ValueError, OSError, RuntimeError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        raise typer.Exit(130) from None
    Console().print(render_report(result))
    if report is not None:
        Console().print(f"wrote {report}")
    if result.error:
        typer.echo(f"error: {result.error}", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
