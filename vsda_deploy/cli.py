"""`vsda-infer SOURCE --model MODEL`: streaming segmentation with temporal smoothing (options only).

    vsda-infer camera0 --model model.onnx --show
    vsda-infer clip.mp4 --model model.onnx --save-video overlay.mp4 --legend --report report.json
    vsda-infer cityscapes-vps:data/synth/target --model model.onnx --smooth none --report report.json

Everything happens in :func:`vsda_deploy.infer.run_inference`. Exit status: 0 when the stream
ended or was stopped (Ctrl-C, SIGTERM, ``q`` in the window); 1 for a runtime failure (a model, source
or output that fails, a stream lost for good; one line on stderr per failure, the report still written
when the stream ran); 2 for a bad option (one line naming it); 130 when interrupted twice. Only vsda's own
errors (``VsdaError``), file-system errors and running out of memory are one line: any other exception is a
bug and shows its traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console

from vsda_deploy.errors import VsdaError
from vsda_deploy.infer import InferOptions, run_inference
from vsda_deploy.live import log_to_console
from vsda_deploy.options import OptionError, parse_input_size
from vsda_deploy.pipeline import SMOOTH_WIDTH
from vsda_deploy.report import render_report
from vsda_deploy.smoothing import DEFAULT_ALPHA
from vsda_deploy.sources import quiet_opencv

EXIT_FAILURE, EXIT_BAD_OPTION, EXIT_INTERRUPTED = 1, 2, 130

app = typer.Typer(add_completion=False, help="Streaming video segmentation at the edge.")


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


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
    input_size: str | None = typer.Option(None, "--input-size", help="HxW to run the model at, or 'native' for each "
                                          "frame's own size (default: the scale the model was trained for, from "
                                          "its metadata)"),
    smooth: str = typer.Option("flow", "--smooth", help="temporal smoothing: flow | ema | none"),
    alpha: float = typer.Option(DEFAULT_ALPHA, "--alpha", help="weight of the (warped) past in smoothing, in [0, 1)"),
    smooth_width: int = typer.Option(SMOOTH_WIDTH, "--smooth-width", help="smooth class probabilities on a grid at "
                                     "most this wide (px), then resize to the frame"),
    gt: str | None = typer.Option(None, "--gt", help="ground truth for live mIoU/VPQ/TC: cityscapes-vps:ROOT | "
                                  "cityscapes-seq:ROOT (frames must be named like the dataset's)"),
    split: str = typer.Option("val", "--split", help="split of a dataset SOURCE or --gt"),
    save_video: Path | None = typer.Option(None, "--save-video", help="overlay video in real time (.mp4, .mov, "
                                           ".avi, .mkv)"),
    legend: bool = typer.Option(False, "--legend", help="draw the classes present (colour, name) on the overlay "
                                "video and window"),
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
    reconnects: int = typer.Option(5, "--reconnects", help="a live source that cannot connect or is lost is retried "
                                   "this many times (back-off 0.5 s, 1 s, 2 s ... 10 s) before giving up"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also show OpenCV's and FFmpeg's own messages"),
) -> None:
    """Segment a video stream: per-stage latency, temporal smoothing, outputs, and metrics with ground truth."""
    err = Console(stderr=True)
    log_to_console(err, logging.INFO if verbose else logging.WARNING)
    quiet_opencv(verbose)
    try:
        options = InferOptions(
            source=source, model=model, backend=backend, device=device, provider=provider, precision=precision,
            input_size=parse_input_size(input_size), smooth=smooth, alpha=alpha, smooth_width=smooth_width, gt=gt,
            split=split, save_video=save_video, legend=legend, save_labels=save_labels, panoptic=panoptic,
            save_jsonl=save_jsonl, report=report, show=show, max_frames=max_frames, realtime=realtime,
            warmup=warmup, max_reconnects=reconnects, live=err.is_terminal)
        result = run_inference(options, console=err)
    except OptionError as e:
        raise _fail(str(e), EXIT_BAD_OPTION) from None
    except MemoryError as e:
        raise _fail(f"out of memory ({e or 'no detail'}); try a smaller --input-size", EXIT_FAILURE) from None
    except (VsdaError, OSError) as e:  # anything else is a bug: its traceback shows
        raise _fail(str(e), EXIT_FAILURE) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", EXIT_INTERRUPTED) from None
    Console().print(render_report(result))
    report_failed = any(e.startswith("--report ") for e in result.errors)
    if report is not None and not report_failed:
        Console().print(f"wrote {report}")
    for error in result.errors:
        typer.echo(f"error: {error}", err=True)
    if result.errors:
        raise typer.Exit(EXIT_FAILURE)


if __name__ == "__main__":
    app()
