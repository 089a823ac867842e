"""FP16 and INT8 graphs: what stays FP32, TensorRT's Q/DQ rules (and that the checker catches breaches),
calibration frames from folders, Cityscapes-VPS trees and videos, and the normalisation they get."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from vsda_export.onnx_export import ExportError, export_fp32, load_for_export, model_meta
from vsda_export.precision import (
    FrameCalibrationReader,
    FrameSet,
    convert_fp16,
    fp32_nodes,
    open_frames,
    quantize_int8,
    spread,
    trt_qdq_violations,
)

from tests.export.test_onnx_export import random_checkpoint
from vsda_deploy.model_meta import read_onnx_meta
from vsda_deploy.pipeline import model_input
from vsda_deploy.preprocess import IMAGENET, Normalization

SIZE = (48, 96)


def _write_frames(folder: Path, n: int, size: tuple[int, int] = (40, 72), name: str = "f{:03d}.png") -> list[Path]:
    """Write ``n`` smooth colour images (gradients + blobs: activations like a street scene's)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
        img = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        paths.append(folder / name.format(i))
        cv2.imwrite(str(paths[-1]), img)
    return paths


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, torch.nn.Module]:
    """Return ``(FP32 ONNX, calibration folder, model)`` of a BN-realistic random DDRNet-23-slim."""
    tmp = tmp_path_factory.mktemp("prec")
    ckpt = random_checkpoint(tmp / "last.pt", width=8)
    model, state = load_for_export(ckpt)
    path = export_fp32(model, tmp / "model.onnx", model_meta(model, state, ckpt, SIZE, dynamic=True))
    frames = tmp / "calib"
    _write_frames(frames, 6)
    return path, frames, model


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in infos}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    return types


# ---------------------------------------------------------------- FP16


def test_fp16_graph_keeps_io_and_resize_fp32(fp32: tuple, tmp_path: Path) -> None:
    src, _, model = fp32
    half = onnx.load(str(convert_fp16(src, tmp_path / "model_fp16.onnx")))
    types = _value_types(half)
    weights = [i for i in half.graph.initializer if len(i.dims) == 4]
    assert weights and all(w.data_type == TensorProto.FLOAT16 for w in weights)
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # keep_io_types
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    resizes = [n for n in half.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 7 and all(types[n.input[0]] == TensorProto.FLOAT for n in resizes)
    convs = [n for n in half.graph.node if n.op_type == "Conv"]
    assert all(types[n.input[0]] == TensorProto.FLOAT16 for n in convs)
    assert read_onnx_meta(str(tmp_path / "model_fp16.onnx")).precision == "fp16"
    x = np.random.default_rng(1).normal(size=(1, 3, *SIZE)).astype(np.float32)
    out = ort.InferenceSession(str(tmp_path / "model_fp16.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"image": x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert out.dtype == np.float32 and 0 < np.abs(out - ref).max() < 0.1  # FP16: close, not identical


# ---------------------------------------------------------------- INT8


def test_int8_qdq_graph_obeys_tensorrt_rules(fp32: tuple, tmp_path: Path) -> None:
    src, frames, _ = fp32
    reader = FrameCalibrationReader(open_frames(str(frames)), 6, SIZE, IMAGENET)
    q = onnx.load(str(quantize_int8(src, tmp_path / "model_int8.onnx", reader)))
    assert trt_qdq_violations(q) == []
    nodes = list(q.graph.node)
    zero_points = [numpy_helper.to_array(i) for i in q.graph.initializer if i.name.endswith("_zero_point")]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    producer = {o: n for n in nodes for o in n.output}
    inits = {i.name: i for i in q.graph.initializer}
    convs = [n for n in nodes if n.op_type == "Conv"]
    quantized = [n for n in convs if producer.get(n.input[0]) and producer[n.input[0]].op_type == "DequantizeLinear"]
    assert [n.name for n in convs if n not in quantized] == ["/head/conv2/Conv"]  # the classifier stays FP32
    for conv in quantized:  # INT8 weights, one scale per output channel on axis 0, FP32 bias
        dq = producer[conv.input[1]]
        weight, scale = inits[dq.input[0]], numpy_helper.to_array(inits[dq.input[1]])
        assert weight.data_type == TensorProto.INT8 and scale.shape == (weight.dims[0],)
        assert next(a.i for a in dq.attribute if a.name == "axis") == 0
        assert len(conv.input) < 3 or inits[conv.input[2]].data_type == TensorProto.FLOAT
    for node in nodes:
        if node.op_type == "QuantizeLinear":  # activations: one scale per tensor
            assert numpy_helper.to_array(inits[node.input[1]]).size == 1
    # classifier -> upsampling -> logits stays FP32 end to end: no Q/DQ between them
    last = producer["logits"]
    assert last.op_type == "Resize" and producer[last.input[0]].name == "/head/conv2/Conv"
    assert read_onnx_meta(str(tmp_path / "model_int8.onnx")).precision == "int8"


def test_int8_cpu_target_breaks_tensorrt_rules(fp32: tuple, tmp_path: Path) -> None:
    src, frames, _ = fp32
    reader = FrameCalibrationReader(open_frames(str(frames)), 3, SIZE, Normalization((0.5,) * 3, (0.25,) * 3))
    q = onnx.load(str(quantize_int8(src, tmp_path / "cpu.onnx", reader, target="cpu")))
    problems = trt_qdq_violations(q)
    assert problems and any("zero point is uint8" in p for p in problems)
    with pytest.raises(ExportError, match="^--int8-target gpu: choose from trt, cpu"):
        quantize_int8(src, tmp_path / "x.onnx", reader, target="gpu")
    with pytest.raises(ExportError, match="^--calib-method kl: choose from minmax, entropy, percentile"):
        quantize_int8(src, tmp_path / "x.onnx", reader, method="kl")


def test_int8_cpu_graph_folds_relu_and_reads_shapes_quantized(fp32: tuple, tmp_path: Path) -> None:
    """UINT8 target: Relus between INT8 layers are gone, no Shape waits for a DequantizeLinear, the
    image's convolution stays FP32, and the result still agrees with the FP32 graph (argmax)."""
    src, frames, _ = fp32
    reader = FrameCalibrationReader(open_frames(str(frames)), 6, SIZE, IMAGENET)
    q = onnx.load(str(quantize_int8(src, tmp_path / "cpu.onnx", reader, target="cpu")))
    relus = lambda m: sum(n.op_type == "Relu" for n in m.graph.node)  # noqa: E731
    assert relus(q) < relus(onnx.load(str(src))) / 2
    producer = {out: node for node in q.graph.node for out in node.output}
    shapes = [n for n in q.graph.node if n.op_type == "Shape"]
    assert shapes and all(producer.get(n.input[0]) is None or producer[n.input[0]].op_type != "DequantizeLinear"
                          for n in shapes)
    used = {i for n in q.graph.node for i in n.input} | {o.name for o in q.graph.output}
    assert all(n.output[0] in used for n in q.graph.node)  # nothing dead left behind
    first = [n for n in q.graph.node if n.op_type == "Conv" and n.input[0] == "image"]
    assert len(first) == 1 and not any(n.op_type == "QuantizeLinear" and n.input[0] == "image" for n in q.graph.node)
    reader.rewind()
    x = np.concatenate([reader.get_next()["image"] for _ in range(6)])
    runs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (src, tmp_path / "cpu.onnx")]
    ref, out = (r.run(None, {"image": x})[0].argmax(1) for r in runs)
    assert (ref == out).mean() >= 0.97


def _qdq_graph(zero_point: np.ndarray, act_scale: np.ndarray, axis: int = 0) -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(weight int8, per-channel on ``axis``)): the smallest Q/DQ conv."""
    w = numpy_helper.from_array(np.ones((4, 2, 1, 1), np.int8), "w")
    w_scale = numpy_helper.from_array(np.full(4 if axis == 0 else 2, 0.1, np.float32), "w_scale")
    w_zp = numpy_helper.from_array(np.zeros(w_scale.dims, np.int8), "w_zp")
    x_scale = numpy_helper.from_array(act_scale.astype(np.float32), "x_scale")
    x_zp = numpy_helper.from_array(zero_point, "x_zp")
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zp"], ["wd"], name="dq_w", axis=axis),
             helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
                              [w, w_scale, w_zp, x_scale, x_zp])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_trt_rule_checker_knows_each_rule() -> None:
    assert trt_qdq_violations(_qdq_graph(np.array(0, np.int8), np.array(0.02))) == []
    assert trt_qdq_violations(_qdq_graph(np.array(3, np.int8), np.array(0.02))) == [
        "QuantizeLinear q_x: zero point [3] != 0 (TensorRT is symmetric only)",
        "DequantizeLinear dq_x: zero point [3] != 0 (TensorRT is symmetric only)"]
    assert trt_qdq_violations(_qdq_graph(np.array(128, np.uint8), np.array(0.02)))[0] == (
        "QuantizeLinear q_x: zero point is uint8, TensorRT needs int8")
    per_channel_act = trt_qdq_violations(_qdq_graph(np.zeros(2, np.int8), np.full(2, 0.02)))
    assert per_channel_act == [f"{op} {name}: per-channel scales on an activation; TensorRT needs activations "
                               "per-tensor" for op, name in (("QuantizeLinear", "q_x"), ("DequantizeLinear", "dq_x"))]
    assert trt_qdq_violations(_qdq_graph(np.array(0, np.int8), np.array(0.02), axis=1)) == [
        "DequantizeLinear dq_w: per-channel axis 1 for Conv, TensorRT needs 0"]


@pytest.mark.parametrize(("name", "width"), [("ddrnet23_slim", 8), ("deeplabv2_r18", 8)])
def test_fp32_nodes_are_the_classifier_and_resizes(name: str, width: int, tmp_path: Path) -> None:
    ckpt = random_checkpoint(tmp_path / "c.pt", name=name, width=width)
    model, state = load_for_export(ckpt)
    proto = onnx.load(str(export_fp32(model, tmp_path / "m.onnx", model_meta(model, state, ckpt, SIZE, True))))
    keep = fp32_nodes(proto, 15)
    convs = [n for n in keep if proto.graph.node[[m.name for m in proto.graph.node].index(n)].op_type == "Conv"]
    resizes = {n.name for n in proto.graph.node if n.op_type == "Resize"}
    assert resizes <= set(keep)
    if name == "ddrnet23_slim":
        assert convs == ["/head/conv2/Conv"]
    else:  # DeepLabV2's classifier is the ASPP: four dilated convs to 15 classes and their sum
        assert sorted(convs) == [f"/head/branches.{i}/Conv" for i in range(4)]
        assert sum(n.startswith("/head/Add") for n in keep) == 3
    assert not any(n.startswith("/backbone/layer") for n in keep)


# ---------------------------------------------------------------- calibration frames


def test_spread_and_model_input_known_answers() -> None:
    assert spread(10, 4) == [0, 3, 6, 9]
    assert spread(3, 10) == [0, 1, 2] and spread(5, 1) == [0] and spread(0, 4) == []
    rgb = np.array([[[255, 0, 128], [0, 255, 51]]], np.uint8)  # 1 x 2 pixels
    x = model_input(rgb, None, IMAGENET)  # what calibration feeds: vsda-infer's input
    assert x.shape == (1, 3, 1, 2) and x.dtype == np.float32
    assert x[0, :, 0, 0] == pytest.approx([(1 - 0.485) / 0.229, -0.456 / 0.224, (128 / 255 - 0.406) / 0.225],
                                          abs=1e-6)
    assert x[0, :, 0, 1] == pytest.approx([-0.485 / 0.229, (1 - 0.456) / 0.224, (0.2 - 0.406) / 0.225], abs=1e-6)
    assert model_input(np.zeros((10, 20, 3), np.uint8), (4, 6), IMAGENET).shape == (1, 3, 4, 6)


def test_frames_from_folders_and_cityscapes_vps_trees(tmp_path: Path) -> None:
    nested = tmp_path / "rec"
    _write_frames(nested / "b", 2, name="f{}.jpg")
    _write_frames(nested / "a", 3, name="f{}.png")
    (nested / "a" / "notes.txt").write_text("skip me")
    frames = open_frames(str(nested))
    assert [p.relative_to(nested).as_posix() for p in frames.paths] == ["a/f0.png", "a/f1.png", "a/f2.png",
                                                                          "b/f0.jpg", "b/f1.jpg"]
    vps = tmp_path / "vps"
    _write_frames(vps / "train" / "img_all", 4, name="0001_{:04d}_lindau_000001_000000_leftImg8bit.png")
    _write_frames(vps / "val" / "img", 2, name="0002_{:04d}_lindau_000002_000000_leftImg8bit.png")
    assert len(open_frames(f"cityscapes-vps:{vps}")) == 4  # train/img_all: unlabelled target video
    assert len(open_frames(f"cityscapes-vps:{vps}", split="val")) == 2  # falls back to img
    reader = FrameCalibrationReader(open_frames(f"cityscapes-vps:{vps}"), 3, (8, 16),
                                    Normalization((0.5,) * 3, (0.5,) * 3))
    assert len(reader) == 3 and reader.indices == [0, 2, 3]  # spread(4, 3): first and last included
    batches = [reader.get_next() for _ in range(4)]
    assert batches[3] is None and all(b["image"].shape == (1, 3, 8, 16) for b in batches[:3])
    reader.rewind()
    assert np.array_equal(reader.get_next()["image"], batches[0]["image"])


def test_frames_from_a_video_file(tmp_path: Path) -> None:
    path = tmp_path / "drive.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 32))
    for i in range(12):
        writer.write(np.full((32, 64, 3), 20 * i, np.uint8))  # frame i is grey level 20 i
    writer.release()
    frames = open_frames(f"video:{path}")
    assert len(frames) == 12 and frames.video == path
    got = list(frames.read(spread(12, 4)))  # frames 0, 4, 7, 11
    assert [round(float(f.mean()) / 20) for f in got] == [0, 4, 7, 11]
    assert open_frames(str(path)).video == path  # a bare video path works too


def test_frame_spec_errors_name_the_spec(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=f"^{tmp_path / 'nope'}: no such file or folder"):
        open_frames(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match=f"^{tmp_path / 'empty'}: no images"):
        open_frames(str(tmp_path / "empty"))
    with pytest.raises(ExportError, match=f"^cityscapes-vps:{tmp_path}: no train/img_all or train/img folder"):
        open_frames(f"cityscapes-vps:{tmp_path}")
    (tmp_path / "train" / "img_all").mkdir(parents=True)
    with pytest.raises(ExportError, match=f"^cityscapes-vps:{tmp_path}: no images"):
        open_frames(f"cityscapes-vps:{tmp_path}")
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ExportError, match=f"^video:{bad}: cannot open as a video"):
        open_frames(f"video:{bad}")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(ExportError, match=f"^{broken / 'a.png'}: cannot read this image"):
        list(open_frames(str(broken)).read([0]))
    with pytest.raises(ExportError, match="^--calib-frames 0: must be at least 1"):
        FrameCalibrationReader(FrameSet("x", (broken / "a.png",)), 0, (8, 8), IMAGENET)
