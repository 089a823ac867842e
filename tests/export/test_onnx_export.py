"""FP32 export: graph shapes (dynamic and static), metadata round trip, checkpoint and output errors, and the
bad inputs of `vsda-export` (one line, exit 1)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner
from vsda_export.cli import app
from vsda_export.onnx_export import (
    ExportError,
    ensure_writable,
    export_fp32,
    load_for_export,
    model_meta,
    parse_input_size,
)

from tests.helpers import trained_like
from vsda_deploy.labels import VIPER15
from vsda_deploy.model_meta import read_onnx_meta
from vsda_deploy.options import OptionError
from vsda_train.checkpoint import save_checkpoint
from vsda_train.models import create_model


def random_checkpoint(path: Path, name: str = "ddrnet23_slim", width: int = 8, num_classes: int = 15,
                      label_space: str = "viper15", **extra: object) -> Path:
    """Write a checkpoint of a randomly initialised (BN-realistic) model the way the phases save one."""
    torch.manual_seed(0)
    model = trained_like(create_model(name, num_classes, width=width))
    return save_checkpoint(path, {"model": model.state_dict(), "model_config": model.config,
                                  "label_space": label_space, "iteration": 1, **extra})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.pt")


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_parse_input_size() -> None:
    assert parse_input_size("512x1024") == (512, 1024)
    assert parse_input_size(" 128 X 256 ") == (128, 256)
    for bad in ("512", "512x", "axb", "8x1024", "512*1024"):
        with pytest.raises(OptionError, match=f"^--input-size '?{re.escape(bad)}'?: "):
            parse_input_size(bad)


def test_dynamic_export_shapes_and_metadata_round_trip(ckpt: Path, tmp_path: Path) -> None:
    model, state = load_for_export(ckpt)
    meta = model_meta(model, state, ckpt, (64, 128), dynamic=True)
    path = export_fp32(model, tmp_path / "model.onnx", meta)
    proto = onnx.load(str(path))
    assert _dims(proto.graph.input[0]) == ["batch", 3, "height", "width"]
    assert _dims(proto.graph.output[0]) == ["batch", 15, "height", "width"]  # class dim static
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert not any(i.data_location == onnx.TensorProto.EXTERNAL for i in proto.graph.initializer)  # one file
    # constant folding merged every conv + BN of the backbone (DAPPM's BN-before-conv cannot fold)
    assert not [n.name for n in proto.graph.node if n.op_type == "BatchNormalization" and "backbone" in n.name]
    got = read_onnx_meta(str(path))
    assert got == meta
    assert got.classes == VIPER15.classes and got.palette == VIPER15.palette and got.things == (9, 10, 11, 12, 13, 14)
    assert got.checkpoint_sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert got.model_config == {"name": "ddrnet23_slim", "num_classes": 15, "width": 8, "aux_head": True}
    assert (got.input_size, got.dynamic, got.precision, got.vsda_version) == ((64, 128), True, "fp32", "0.1.0")
    assert got.mean == (0.485, 0.456, 0.406) and got.std == (0.229, 0.224, 0.225)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for hw in [(64, 128), (37, 91)]:
        x = torch.randn(2, 3, *hw)  # batch 2 too: the batch axis is dynamic
        with torch.no_grad():
            expected = model(x).numpy()
        (logits,) = session.run(None, {"image": x.numpy()})
        assert logits.shape == (2, 15, *hw) and np.abs(expected).max() > 1.0
        assert np.abs(logits - expected).max() <= 1e-4


def test_export_records_the_trained_scale_and_normalisation(tmp_path: Path) -> None:
    """vsda-export defaults to the checkpoint's eval_size and its preprocess; --input-size still wins."""
    from vsda_export import ExportOptions, run_export

    from vsda_deploy.preprocess import CAFFE

    new = random_checkpoint(tmp_path / "new.pt", eval_size=[48, 96], config={"model": {"preprocess": "caffe"}})
    model, state = load_for_export(new)
    meta = model_meta(model, state, new, None, dynamic=True)
    assert meta.input_size == (48, 96) and meta.normalization == CAFFE
    assert model_meta(model, state, new, (64, 128), dynamic=True).input_size == (64, 128)
    old = random_checkpoint(tmp_path / "old.pt")  # written before eval_size and preprocess were recorded
    model, state = load_for_export(old)
    meta = model_meta(model, state, old, None, dynamic=True)
    assert meta.input_size == (512, 1024) and meta.channel_order == "rgb" and meta.mean == (0.485, 0.456, 0.406)
    report = run_export(ExportOptions(str(new), str(tmp_path / "m.onnx"), check=False))
    exported = read_onnx_meta(str(report.files["fp32"]))
    assert exported.input_size == (48, 96) and exported.normalization == CAFFE
    bad = random_checkpoint(tmp_path / "bad.pt", eval_size="big")
    with pytest.raises(ExportError, match=r"bad\.pt: checkpoint eval_size 'big': expected \[H, W\]"):
        run_export(ExportOptions(str(bad), str(tmp_path / "b.onnx"), check=False))


def test_static_export_fixes_every_dim(ckpt: Path, tmp_path: Path) -> None:
    model, state = load_for_export(ckpt)
    path = export_fp32(model, tmp_path / "static.onnx", model_meta(model, state, ckpt, (48, 80), dynamic=False))
    proto = onnx.load(str(path))
    assert _dims(proto.graph.input[0]) == [1, 3, 48, 80] and _dims(proto.graph.output[0]) == [1, 15, 48, 80]
    assert read_onnx_meta(str(path)).dynamic is False
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"image": np.zeros((1, 3, 48, 80), np.float32)})[0].shape == (1, 15, 48, 80)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"image": np.zeros((1, 3, 64, 80), np.float32)})


def test_opset_below_per_channel_quantization_is_refused(ckpt: Path, tmp_path: Path) -> None:
    model, state = load_for_export(ckpt)
    with pytest.raises(ExportError, match="^--opset 11: vsda exports need opset >= 13"):
        export_fp32(model, tmp_path / "m.onnx", model_meta(model, state, ckpt, (64, 64), True), opset=11)


# ---------------------------------------------------------------- bad checkpoints and outputs


def test_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    with pytest.raises(ExportError, match=f"^{missing}: checkpoint not found"):
        load_for_export(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ExportError, match=f"^{garbage}: not a readable vsda checkpoint"):
        load_for_export(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, foreign)
    with pytest.raises(ExportError, match=f"^{foreign}: not a vsda checkpoint"):
        load_for_export(foreign)
    no_config = tmp_path / "no_config.pt"
    torch.save({"model": {}}, no_config)
    with pytest.raises(ExportError, match=f"^{no_config}: checkpoint has no model_config"):
        load_for_export(no_config)


def test_checkpoint_of_another_architecture(tmp_path: Path) -> None:
    ddrnet = torch.load(random_checkpoint(tmp_path / "d.pt"), weights_only=True)
    other = tmp_path / "other.pt"
    save_checkpoint(other, {**ddrnet, "model_config": {"name": "deeplabv2_r18", "num_classes": 15, "width": 8}})
    with pytest.raises(ExportError, match=f"^{other}: weights do not fit deeplabv2_r18"):
        load_for_export(other)
    unknown = tmp_path / "unknown.pt"
    save_checkpoint(unknown, {**ddrnet, "model_config": {"name": "pidnet_s", "num_classes": 15}})
    with pytest.raises(ExportError, match=f"^{unknown}: model 'pidnet_s' is unknown"):
        load_for_export(unknown)
    mismatch = random_checkpoint(tmp_path / "five.pt", num_classes=5)
    with pytest.raises(ExportError, match=f"^{mismatch}: model has 5 classes but its label space viper15 has 15"):
        load_for_export(mismatch)


def test_unwritable_outputs(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ExportError, match=f"^{blocker / 'sub' / 'model.onnx'}: cannot write the output here"):
        ensure_writable(blocker / "sub" / "model.onnx")
    with pytest.raises(ExportError, match=f"^{tmp_path}: is a folder"):
        ensure_writable(tmp_path)
    assert ensure_writable(tmp_path / "new" / "model.onnx") == tmp_path / "new" / "model.onnx"
    assert (tmp_path / "new").is_dir() and list((tmp_path / "new").iterdir()) == []  # the probe is gone


def _cli(*args: str) -> tuple[int, list[str]]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stderr.strip().splitlines()


def test_cli_bad_inputs_exit_with_one_line(ckpt: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out" / "model.onnx")
    missing = tmp_path / "missing.pt"
    assert _cli(str(missing), "-o", out) == (1, [f"vsda-export: {missing}: checkpoint not found"])

    ddrnet = torch.load(ckpt, weights_only=True)
    other = save_checkpoint(tmp_path / "other.pt", {**ddrnet, "model_config": {"name": "deeplabv2_r18",
                                                                              "num_classes": 15, "width": 8}})
    code, lines = _cli(str(other), "-o", out, "--no-check")
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"vsda-export: {other}: weights do not fit")

    empty = tmp_path / "empty_calib"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here")
    code, lines = _cli(str(ckpt), "-o", out, "--int8", "--calib", str(empty), "--no-check")
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"vsda-export: {empty}: no images")
    assert not (tmp_path / "out" / "model.onnx").exists()  # checked before anything is written

    blocker = tmp_path / "blocker"
    blocker.write_text("")
    code, lines = _cli(str(ckpt), "-o", str(blocker / "model.onnx"), "--no-check")
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"vsda-export: {blocker / 'model.onnx'}: cannot write")

    assert _cli(str(ckpt), "-o", out, "--data", str(tmp_path / "nope")) == (
        1, [f"vsda-export: {tmp_path / 'nope'}: no such file or folder"])
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_cli_bad_option_values_exit_2_with_one_line(ckpt: Path, tmp_path: Path) -> None:
    """Bad option values exit 2 (the CLIs' documented code), before anything is read or written."""
    out = str(tmp_path / "out" / "model.onnx")
    empty = tmp_path / "empty_calib"
    empty.mkdir()
    assert _cli(str(ckpt), "-o", out, "--parity-frames", "0") == (2, ["vsda-export: --parity-frames 0: must be at "
                                                                      "least 1"])
    assert _cli(str(ckpt), "-o", out, "--int8") == (2, [
        "vsda-export: --int8: give --calib SPEC_OR_DIR (unlabelled target-domain frames: cityscapes-vps:ROOT, "
        "video:PATH or a folder of images)"])
    assert _cli(str(ckpt), "-o", out, "--input-size", "512by1024") == (
        2, ["vsda-export: --input-size '512by1024': expected HxW, e.g. 512x1024"])
    assert _cli(str(ckpt), "-o", out, "--input-size", "20000x20000") == (
        2, ["vsda-export: --input-size 20000x20000: height and width must be within 16..4096 px"])
    code, lines = _cli(str(ckpt), "-o", str(tmp_path / "model.pt"))
    assert code == 2 and len(lines) == 1 and lines[0].startswith("vsda-export: -o ")
    assert _cli(str(ckpt), "-o", out, "--int8", "--calib", str(empty), "--calib-method", "kl") == (2, [
        "vsda-export: --calib-method kl: choose from minmax, entropy, percentile"])
    assert _cli(str(ckpt), "-o", out, "--opset", "11") == (
        2, ["vsda-export: --opset 11: vsda exports need opset >= 13 (per-channel Q/DQ)"])
    assert _cli(str(ckpt), "-o", out, "--workspace", "0") == (2, ["vsda-export: --workspace 0.0: must be > 0 GiB"])
    assert not (tmp_path / "out").exists()  # nothing written for a bad option


def test_cli_without_labelled_data_needs_data_or_no_check(ckpt: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no data/synth/target here
    code, lines = _cli(str(ckpt), "-o", "m.onnx", "--input-size", "32x64")
    assert code == 1 and lines[0].startswith("vsda-export: --check: no frames to compare on")
    code, _ = _cli(str(ckpt), "-o", "m.onnx", "--input-size", "32x64", "--no-check")
    assert code == 0 and read_onnx_meta("m.onnx").input_size == (32, 64) and not Path("parity.json").exists()
