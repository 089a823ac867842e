"""`vsda-export CKPT -o model.onnx`: checkpoint -> ONNX (FP32 / FP16 / INT8) -> TensorRT, each checked.

Exit codes: 0 done (and every file within tolerance), 2 a bad option value, 1 any other failure (a
missing or foreign checkpoint, an unwritable output, no TensorRT), 3 an exported file misses its
parity tolerance (the numbers are printed and in parity.json). Errors are one line naming the option or file:
vsda's own errors (``VsdaError``) and file-system errors; any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, help="Export a vsda checkpoint to ONNX (FP32 / FP16 / INT8) and TensorRT.")

EXIT_FAILURE, EXIT_BAD_OPTION = 1, 2
EXIT_PARITY = 3


@app.command()
def main(
    checkpoint: str = typer.Argument(..., help="a vsda checkpoint (.pt); or an .onnx file to build an engine from"),
    output: str = typer.Option("model.onnx", "-o", "--output", help="FP32 ONNX path; siblings get _fp16/_int8/.engine"),
    input_size: str | None = typer.Option(None, "--input-size", help="HEIGHTxWIDTH the model is exported for and "
                                          "vsda-infer runs it at (default: the checkpoint's eval_size, else "
                                          "512x1024)"),
    dynamic: bool = typer.Option(True, "--dynamic/--static", help="dynamic batch, height and width (or fixed)"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset"),
    fp16: bool = typer.Option(False, "--fp16", help="also write model_fp16.onnx (FP16 graph, FP32 I/O)"),
    int8: bool = typer.Option(False, "--int8", help="also write model_int8.onnx (static INT8 Q/DQ)"),
    calib: str = typer.Option(None, "--calib", help="calibration frames: cityscapes-vps:ROOT (train/img_all), "
                              "cityscapes-seq:ROOT, video:PATH, a folder of images or a video file"),
    calib_frames: int = typer.Option(256, "--calib-frames", help="frames spread over --calib for calibration"),
    calib_method: str = typer.Option("percentile", "--calib-method", help="percentile | minmax | entropy"),
    int8_target: str = typer.Option("trt", "--int8-target", help="trt: symmetric INT8 (TensorRT and any ONNX "
                                    "Runtime) | cpu: UINT8 activations (ONNX Runtime on x86 only)"),
    per_channel: bool = typer.Option(True, "--per-channel/--per-tensor", help="INT8 weight scales"),
    engine: bool = typer.Option(False, "--engine", help="build a TensorRT engine (+ sidecar) from the "
                                "lowest-precision ONNX; needs vsda[trt] and a GPU"),
    engine_fp16: bool = typer.Option(False, "--engine-fp16", help="TensorRT 10: FP16 builder flag on the FP32 "
                                     "graph (weakly typed, e.g. Jetson) instead of a strongly typed build"),
    workspace: float = typer.Option(4.0, "--workspace", help="TensorRT builder workspace, GiB"),
    check: bool = typer.Option(True, "--check/--no-check", help="parity of every file vs PyTorch; exit 3 on a miss"),
    data: str = typer.Option(None, "--data", help="frames for the parity check: cityscapes-vps:ROOT (labelled "
                             "val: also the mIoU change), a folder or a video; default: the synthetic target val"),
    parity_frames: int = typer.Option(8, "--parity-frames", help="frames compared logit by logit"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log TensorRT and ONNX Runtime messages"),
) -> None:
    """Export a checkpoint to ONNX (and TensorRT) and check every file against PyTorch."""
    from vsda_export import ExportOptions, run_export
    from vsda_export.onnx_export import parse_input_size

    from vsda_deploy.errors import VsdaError
    from vsda_deploy.options import OptionError

    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    err = Console(stderr=True)
    try:
        opts = ExportOptions(
            checkpoint=checkpoint, output=output, input_size=parse_input_size(input_size) if input_size else None,
            dynamic=dynamic,
            opset=opset, fp16=fp16, int8=int8, calib=calib, calib_frames=calib_frames, calib_method=calib_method,
            int8_target=int8_target, per_channel=per_channel, engine=engine, engine_fp16=engine_fp16,
            workspace_gib=workspace, check=check, data=data, parity_frames=parity_frames)
        # Piped (make demo, CI logs), Rich would squeeze the parity table into 80 columns.
        report = run_export(opts, console=Console(width=None if sys.stdout.isatty() else 120))
    except OptionError as e:
        err.print(f"vsda-export: {e}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_OPTION) from None
    except (VsdaError, OSError) as e:  # ExportError, CheckpointError, missing files; any other is a bug
        err.print(f"vsda-export: {e}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILURE) from None
    if report.failures:
        for line in report.failures:
            err.print(f"vsda-export: tolerance missed: {line}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_PARITY)


if __name__ == "__main__":
    sys.exit(app())
