"""export: checkpoint -> ONNX (FP32 / FP16 / INT8 Q/DQ) -> TensorRT engine, each checked against PyTorch.

``run_export(ExportOptions(checkpoint, output, ...))`` is what ``vsda-export`` runs:

1. FP32 ONNX with the model's metadata (``export.onnx_export``);
2. ``--fp16`` / ``--int8``: ``model_fp16.onnx`` / ``model_int8.onnx`` next to it (``export.precision``),
   INT8 calibrated on unlabelled target-domain frames;
3. ``--engine``: a TensorRT plan + sidecar from the lowest-precision graph (``export.tensorrt``);
4. parity of every file against PyTorch on real frames, ``parity.json`` (``export.parity``).

Given an ``.onnx`` file instead of a checkpoint, only step 3 runs (rebuilding an engine on a device).
Heavy modules (torch, onnx, onnxruntime, tensorrt) are imported inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vsda_deploy.options import OptionError

__all__ = ["DEFAULT_DATA", "ExportOptions", "ExportReport", "run_export"]

DEFAULT_DATA = "data/synth/target"  # the synthetic benchmark of `make demo`, used when --data is not given


@dataclass(frozen=True)
class ExportOptions:
    """Everything ``vsda-export`` takes (see ``export.cli`` for the meaning of each option)."""

    checkpoint: str
    output: str = "model.onnx"
    input_size: tuple[int, int] | None = None  # None: the checkpoint's eval_size, else 512x1024
    dynamic: bool = True
    opset: int = 17
    fp16: bool = False
    int8: bool = False
    calib: str | None = None
    calib_frames: int = 256
    calib_method: str = "percentile"
    int8_target: str = "trt"
    per_channel: bool = True
    engine: bool = False
    engine_fp16: bool = False
    workspace_gib: float = 4.0
    check: bool = True
    data: str | None = None
    parity_frames: int = 8


@dataclass
class ExportReport:
    """What an export produced: files by precision, the engine, parity rows and tolerance failures."""

    files: dict[str, Path] = field(default_factory=dict)
    engine: Path | None = None
    rows: list[Any] = field(default_factory=list)
    parity_json: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [f for row in self.rows for f in row.failures]


def _sibling(output: Path, suffix: str) -> Path:
    return output.with_name(f"{output.stem}{suffix}")


def _validate(opts: ExportOptions) -> Path:
    """Return the output path after the checks that cost nothing; OptionError (exit 2) names the option."""
    from vsda_export.onnx_export import MIN_OPSET, ensure_writable
    from vsda_export.precision import CALIB_METHODS, INT8_TARGETS

    output = Path(opts.output)
    if output.suffix != ".onnx":
        raise OptionError(f"-o {output}: the output must be an .onnx file (siblings get _fp16/_int8/.engine)")
    if opts.int8 and not opts.calib:
        raise OptionError("--int8: give --calib SPEC_OR_DIR (unlabelled target-domain frames: cityscapes-vps:ROOT, "
                          "video:PATH or a folder of images)")
    if opts.calib_method not in CALIB_METHODS:
        raise OptionError(f"--calib-method {opts.calib_method}: choose from {', '.join(CALIB_METHODS)}")
    if opts.int8_target not in INT8_TARGETS:
        raise OptionError(f"--int8-target {opts.int8_target}: choose from {', '.join(INT8_TARGETS)}")
    if opts.engine and opts.int8 and opts.int8_target == "cpu":
        raise OptionError("--engine: --int8-target cpu writes UINT8 activations, which TensorRT rejects; "
                          "use --int8-target trt")
    for option, value in (("--calib-frames", opts.calib_frames), ("--parity-frames", opts.parity_frames)):
        if value < 1:
            raise OptionError(f"{option} {value}: must be at least 1")
    if opts.opset < MIN_OPSET:
        raise OptionError(f"--opset {opts.opset}: vsda exports need opset >= {MIN_OPSET} (per-channel Q/DQ)")
    if opts.workspace_gib <= 0:
        raise OptionError(f"--workspace {opts.workspace_gib}: must be > 0 GiB")
    if opts.engine:
        from vsda_export.tensorrt import import_tensorrt

        import_tensorrt()  # fail before minutes of export, naming the [trt] extra
    return ensure_writable(output)


def _parity_data(opts: ExportOptions) -> tuple[str, Any, Path | None]:
    """Return ``(frame spec, its FrameSet, labelled Cityscapes-VPS root or None)`` for the parity check."""
    from vsda_export.onnx_export import ExportError
    from vsda_export.precision import open_frames

    spec = opts.data
    if spec is None and opts.calib and opts.calib.startswith("cityscapes-vps:"):
        root = Path(opts.calib.partition(":")[2]).expanduser()
        spec = opts.calib if (root / "val").is_dir() else None
    if spec is None and (Path(DEFAULT_DATA) / "val").is_dir():
        spec = f"cityscapes-vps:{DEFAULT_DATA}"
    spec = spec or opts.calib
    if spec is None:
        raise ExportError("--check: no frames to compare on; give --data cityscapes-vps:ROOT (its labelled val "
                          "split) or a folder / video of frames, or --no-check")
    kind, _, rest = spec.partition(":")
    root = Path(rest).expanduser() if kind == "cityscapes-vps" else None
    labelled = root is not None and ((root / "val" / "panoptic_inst").is_dir()
                                     or (root / "panoptic_gt_val_city_vps.json").is_file())
    return spec, open_frames(spec, split="val"), root if labelled else None


def _say(console: Any, text: str) -> None:
    if console is not None:
        console.print(text)


def run_export(opts: ExportOptions, console: Any = None) -> ExportReport:
    """Export, convert, build and check as ``opts`` asks; return the report (ExportError on bad input).

    Tolerance failures do not raise: they are in ``report.failures`` (and ``parity.json``).
    """
    if Path(opts.checkpoint).suffix == ".onnx":
        return _engine_only(opts, console)
    output = _validate(opts)

    from vsda_export.onnx_export import export_fp32, load_for_export, model_meta
    from vsda_export.precision import FrameCalibrationReader, convert_fp16, open_frames, quantize_int8

    model, ckpt = load_for_export(opts.checkpoint)
    # bad --calib / --data fail here, before minutes of export
    calib = open_frames(opts.calib, split="train") if opts.int8 else None
    parity = _parity_data(opts) if opts.check else None
    meta = model_meta(model, ckpt, opts.checkpoint, opts.input_size, opts.dynamic)
    size = tuple(meta.input_size)
    report = ExportReport()
    report.files["fp32"] = export_fp32(model, output, meta, opts.opset)
    _say(console, f"wrote {output} (FP32, opset {opts.opset}, {'dynamic' if opts.dynamic else 'static'} HxW, "
                  f"runs at {size[0]}x{size[1]} by default)")
    if opts.fp16:
        report.files["fp16"] = convert_fp16(output, _sibling(output, "_fp16.onnx"))
        _say(console, f"wrote {report.files['fp16']} (FP16, FP32 I/O)")
    if opts.int8:
        reader = FrameCalibrationReader(calib, opts.calib_frames, size, meta.normalization)
        _say(console, f"calibrating INT8 ({opts.calib_method}) on {len(reader)} frames of {opts.calib}")
        report.files["int8"] = quantize_int8(output, _sibling(output, "_int8.onnx"), reader, opts.calib_method,
                                             opts.per_channel, opts.int8_target)
        _check_qdq(report.files["int8"], opts.int8_target)
        _say(console, f"wrote {report.files['int8']} (INT8 Q/DQ, {opts.int8_target})")
    if opts.engine:
        report.engine = _build(opts, report.files, output, console)
    if parity is not None:
        _run_parity(opts, model, meta, report, parity, output, console)
    return report


def _check_qdq(path: Path, target: str) -> None:
    import onnx
    from vsda_export.onnx_export import ExportError
    from vsda_export.precision import trt_qdq_violations

    problems = trt_qdq_violations(onnx.load(str(path)))
    if target == "trt" and problems:
        raise ExportError(f"{path}: the Q/DQ graph breaks TensorRT's rules ({len(problems)}): {problems[0]}")


def _build(opts: ExportOptions, files: dict[str, Path], output: Path, console: Any) -> Path:
    from vsda_export.tensorrt import build_engine

    source = files["fp32"] if opts.engine_fp16 else files.get("int8") or files.get("fp16") or files["fp32"]
    engine = build_engine(source, _sibling(output, ".engine"), workspace_gib=opts.workspace_gib,
                          fp16_flag=opts.engine_fp16)
    _say(console, f"wrote {engine} (+ {engine.name}.json) from {source.name}")
    return engine


def _engine_only(opts: ExportOptions, console: Any) -> ExportReport:
    from vsda_export.onnx_export import ExportError
    from vsda_export.tensorrt import build_engine, import_tensorrt

    onnx_path = Path(opts.checkpoint)
    if not onnx_path.is_file():
        raise ExportError(f"{onnx_path}: ONNX file not found")
    if not opts.engine:
        raise OptionError(f"{onnx_path}: an ONNX input only builds a TensorRT engine; add --engine")
    import_tensorrt()
    engine = Path(opts.output) if Path(opts.output).suffix == ".engine" else onnx_path.with_suffix(".engine")
    report = ExportReport(engine=build_engine(onnx_path, engine, workspace_gib=opts.workspace_gib,
                                              fp16_flag=opts.engine_fp16))
    _say(console, f"wrote {engine} (+ {engine.name}.json)")
    return report


def _run_parity(opts: ExportOptions, model: Any, meta: Any, report: ExportReport, parity: tuple[str, Any, Path | None],
                output: Path, console: Any) -> None:
    from vsda_export.parity import measure_parity, parity_sizes, reference_segmenter, render_table, write_report
    from vsda_export.precision import spread

    spec, frames_set, gt_root = parity
    frames = list(frames_set.read(spread(len(frames_set), opts.parity_frames)))
    if gt_root is None:
        report.notes.append(f"{spec}: no labelled Cityscapes-VPS val split; mIoU change not measured")
    files = list(report.files.items())
    if report.engine is not None and _engine_runs_here(report.engine, report.notes):
        # an FP32 graph built with the FP16 flag is held to the FP16 tolerance
        precision = "fp16" if opts.engine_fp16 else next(p for p in ("int8", "fp16", "fp32") if p in report.files)
        files.append((precision, report.engine))
    report.rows = measure_parity(reference_segmenter(model, meta), files, frames,
                                 parity_sizes(tuple(meta.input_size), opts.dynamic), gt_root)
    report.parity_json = write_report(report.rows, output.with_name("parity.json"), checkpoint=opts.checkpoint,
                                      data=spec, labelled=str(gt_root) if gt_root else None, notes=report.notes,
                                      calib=opts.calib, calib_method=opts.calib_method if opts.int8 else None)
    if console is not None:
        console.print(render_table(report.rows, f"parity vs PyTorch on {spec}"))
        for note in report.notes:
            console.print(f"note: {note}")


def _engine_runs_here(engine: Path, notes: list[str]) -> bool:
    try:
        from vsda_export.tensorrt import gpu_properties

        gpu_properties()
        return True
    except Exception as e:  # no GPU / cuda here: the engine is built for elsewhere
        notes.append(f"{engine.name}: not run for parity ({e})")
        return False
