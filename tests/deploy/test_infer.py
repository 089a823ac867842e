"""vsda-infer: pipeline, report, sources, faults, SIGTERM, soak (vsda_deploy/infer.py and cli.py)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.deploy.data.fixtures import make_cityscapes_seq
from tests.deploy.test_backends import META, export_onnx, tiny_model, with_meta
from tests.deploy.test_sources import CORRUPT, FAIL, FakeCapture, _scripted_factory
from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.backends import ModelError, Segmenter
from vsda_deploy.cli import app
from vsda_deploy.evaluation import evaluate_folder, read_label_png
from vsda_deploy.infer import (
    STAGES,
    FramePipeline,
    InferOptions,
    Stream,
    argmax_classes,
    run_inference,
    softmax,
)
from vsda_deploy.labels import CITYSCAPES_LUT
from vsda_deploy.latency import LatencyHistogram
from vsda_deploy.metrics import ConfusionMatrix
from vsda_deploy.model_meta import ModelMeta
from vsda_deploy.options import OptionError
from vsda_deploy.outputs import OutputError
from vsda_deploy.preprocess import normalise
from vsda_deploy.smoothing import StreamingSmoother
from vsda_deploy.sources import open_source

runner = CliRunner()
H, W = 64, 128


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic benchmark's target domain (Cityscapes-VPS format): 2 val videos of 10 frames."""
    from vsda_train.synth.config import SynthConfig
    from vsda_train.synth.generate import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, SynthConfig(width=W, height=H, source_clips=1, source_val_clips=0, target_train_clips=1,
                              target_val_clips=2, frames=10))
    return out / "target"


def moving_frames(n: int, h: int = H, w: int = W, step: int = 2) -> list[np.ndarray]:
    """Return n RGB frames of a smooth texture panning ``step`` px per frame (deterministic)."""
    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (h, w + step * n, 3), dtype=np.uint8), (0, 0), 2)
    return [np.ascontiguousarray(texture[:, step * i: step * i + w]) for i in range(n)]


def write_video(path: Path, n: int, fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG" if path.suffix == ".avi" else "mp4v"),
                             fps, (W, H))
    assert writer.isOpened()
    for frame in moving_frames(n):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_folder(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(moving_frames(n)):
        assert cv2.imwrite(str(folder / f"frame{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def invoke(*args: str | Path) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


# --- pieces ----------------------------------------------------------------------------------

def test_latency_histogram_percentiles_in_bounded_memory() -> None:
    h = LatencyHistogram()
    assert h.summary() == {"p50": None, "p95": None, "p99": None}
    size = h.counts.size
    for ms in range(1, 1001):
        h.add(float(ms))
    for q, exact in ((50, 500), (95, 950), (99, 990)):
        assert h.percentile(q) == pytest.approx(exact, rel=0.01)
    for _ in range(20000):
        h.add(0.5)
    assert h.counts.size == size and h.count == 21000 and h.percentile(50) == pytest.approx(0.5, rel=0.01)
    one = LatencyHistogram()
    one.add(3.3)
    assert one.summary() == {"p50": 3.3, "p95": 3.3, "p99": 3.3}  # clamped to the values seen


def test_normalise_is_bitwise_the_training_normalisation() -> None:
    from vsda_train.transforms import normalize

    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    out = normalise(image, META.normalization, np.empty((1, 3, H, W), np.float32))
    assert np.array_equal(out[0], normalize(image).numpy())


def test_softmax_and_argmax() -> None:
    logits = np.array([[[0.0, 2.0]], [[math.log(3.0), 2.0]]], np.float32)  # (2 classes, 1, 2)
    probs = softmax(logits, np.empty_like(logits), np.empty((1, 2), np.float32))
    np.testing.assert_allclose(probs[:, 0, 0], [0.25, 0.75], rtol=1e-6)
    np.testing.assert_allclose(probs[:, 0, 1], [0.5, 0.5], rtol=1e-6)
    best, better = np.empty((1, 2), np.float32), np.empty((1, 2), bool)
    assert argmax_classes(probs, best, better).tolist() == [[1, 0]]  # a tie goes to the first class
    scores = np.random.default_rng(0).standard_normal((15, 20, 30), dtype=np.float32)
    best, better = np.empty((20, 30), np.float32), np.empty((20, 30), bool)
    assert np.array_equal(argmax_classes(scores, best, better), scores.argmax(0))


class RedSegmenter(Segmenter):
    """A numpy stand-in model: class 1 where the normalised red channel is positive, else class 0."""

    backend = "fake"

    def __init__(self, fixed_size: tuple[int, int] | None) -> None:
        super().__init__(Path("red.onnx"), META, "cpu", "numpy")
        self.fixed_size = fixed_size
        self.seen: list[tuple[int, ...]] = []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.seen.append(batch.shape)
        scores = np.zeros((batch.shape[0], 15, *batch.shape[2:]), np.float32)
        scores[:, 1] = batch[:, 0]
        scores[:, 0] = 0.001
        return scores


def test_pipeline_runs_at_the_model_size_and_returns_the_frame_size() -> None:
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, :32, 0] = 255  # red left half
    for smooth, width, grid in (("none", 256, None), ("ema", 256, (16, 32)), ("flow", 256, (16, 32)),
                                ("flow", 16, (8, 16))):
        seg = RedSegmenter(fixed_size=(16, 32))
        pipe = FramePipeline(seg, StreamingSmoother(smooth), smooth_width=width)
        for _ in range(2):
            semantic, ms = pipe.process(frame)
        assert seg.seen == [(1, 3, 16, 32)] * 2 and semantic.shape == (32, 64) and semantic.dtype == np.uint8
        assert (semantic[:, :28] == 1).all() and (semantic[:, 36:] == 0).all(), smooth
        assert set(ms) == {"preprocess", "inference", "smoothing", "postprocess"} and min(ms.values()) >= 0
        weight = pipe.smoother.weight  # the grid the smoother ran on: the model's, capped at `width`
        assert (weight is None if grid is None else weight.shape == grid), (smooth, width)
    with pytest.raises(OptionError, match=r"^red\.onnx: input is fixed at 16x32 \(HxW\); it cannot run at 32x64"):
        FramePipeline(RedSegmenter((16, 32)), StreamingSmoother("none"), input_size=(32, 64))  # before any frame
    with pytest.raises(OptionError, match=r"^--input-size native: red\.onnx has a fixed 16x32 \(HxW\) input"):
        FramePipeline(RedSegmenter((16, 32)), StreamingSmoother("none"), input_size="native")


class ScaleSegmenter(Segmenter):
    """A dynamic stand-in model trained at ``trained`` (H, W): records the size it is run at."""

    backend = "fake"

    def __init__(self, trained: tuple[int, int] | None) -> None:
        super().__init__(Path("scale.onnx"), META, "cpu", "numpy")
        self.trained_size = trained
        self.seen: list[tuple[int, ...]] = []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.seen.append(batch.shape)
        return np.zeros((1, 15, *batch.shape[2:]), np.float32)


def test_frames_of_another_size_run_at_the_trained_scale_by_default() -> None:
    frame = np.zeros((721, 1281, 3), np.uint8)  # a camera's odd size, far from the 64x128 the model knows
    for asked, trained, ran_at in ((None, (64, 128), (64, 128)), ("native", (64, 128), (721, 1281)),
                                   ((96, 160), (64, 128), (96, 160)), (None, None, (721, 1281))):
        seg = ScaleSegmenter(trained)  # trained None: a checkpoint without eval_size
        pipe = FramePipeline(seg, StreamingSmoother("none"), input_size=asked)
        semantic, _ = pipe.process(frame)
        assert seg.seen == [(1, 3, *ran_at)] and semantic.shape == (721, 1281), asked
        assert pipe.scale == ("native" if ran_at == (721, 1281) else f"{ran_at[0]}x{ran_at[1]}")


def test_the_cli_runs_at_the_scale_in_the_model_metadata(models: tuple[Path, Path], tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    for i, frame in enumerate(moving_frames(4, h=96, w=200)):
        cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    sizes = {}
    for flag in ([], ["--input-size", "native"], ["--input-size", "32x64"]):
        report = tmp_path / "r.json"
        code, output = invoke(folder, "--model", models[0], "--report", report, "--save-labels",
                              tmp_path / f"l{len(sizes)}", *flag)
        assert code == 0, output
        sizes[" ".join(flag) or "default"] = json.loads(report.read_text())["input_size"]
        assert read_label_png(tmp_path / f"l{len(sizes) - 1}" / "f0.png").shape == (96, 200)  # the frame's size
    assert sizes == {"default": "64x128", "--input-size native": "native", "--input-size 32x64": "32x64"}


def test_out_of_memory_is_one_line_naming_the_size(models: tuple[Path, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    class Hungry(ScaleSegmenter):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            raise MemoryError  # numpy's error for a buffer the machine cannot give

    with pytest.raises(ModelError, match=r"^scale\.onnx: out of memory running at 4096x4096 \(HxW\) on a 32x48 frame; "
                                         "pass a smaller --input-size$"):
        FramePipeline(Hungry((64, 128)), StreamingSmoother("none"), input_size=(4096, 4096)).process(
            np.zeros((32, 48, 3), np.uint8))
    monkeypatch.setattr("vsda_deploy.pipeline.normalise", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    code, output = invoke(write_folder(tmp_path / "f", 2), "--model", models[0], "--input-size", "4096x4096")
    assert code == 1 and output.strip().splitlines() == [
        f"error: {models[0]}: out of memory running at 4096x4096 (HxW) on a 64x128 frame; pass a smaller --input-size"]


# --- the dataset benchmark: the same numbers as vsda-train eval ------------------------------

def test_dataset_source_scores_exactly_as_vsda_train_eval(models: tuple[Path, Path], bench: Path,
                                                          tmp_path: Path) -> None:
    from vsda_train.cli import app as train_app

    onnx_path, ckpt = models
    out = tmp_path / "eval.json"
    res = runner.invoke(train_app, ["eval", str(ckpt), "--data", f"cityscapes-vps:{bench}", "--json", str(out)])
    assert res.exit_code == 0, res.output
    expected = json.loads(out.read_text())
    assert sum(v > 0 for v in expected["iou"].values()) >= 3 and expected["tc"] is not None  # an untrained model

    spec = f"cityscapes-vps:{bench}"
    by_torch = run_inference(InferOptions(spec, ckpt, smooth="none", warmup=0)).report
    assert by_torch["frames"] == {"read": 20, "processed": 20, "dropped": 0, "corrupt": 0}
    for key in ("miou", "iou", "vpq", "vpq_things", "vpq_stuff", "vpq_k", "tc"):
        assert by_torch["metrics"][key] == expected[key], key

    by_ort = run_inference(InferOptions(spec, onnx_path, smooth="none")).report["metrics"]
    # ONNX Runtime's kernels round differently from torch's: a few near-tie pixels may flip
    assert by_ort["miou"] == pytest.approx(expected["miou"], abs=0.01)
    assert by_ort["tc"] == pytest.approx(expected["tc"], abs=0.1)
    folder_gt = run_inference(InferOptions(str(bench / "val" / "img_all"), onnx_path, smooth="none",
                                           gt=f"cityscapes-vps:{bench}")).report["metrics"]
    assert folder_gt == by_ort  # the same frames as a folder + --gt: the same scores


def test_saved_labels_and_panoptic_are_scored_the_same_by_evaluate_folder(models: tuple[Path, Path], bench: Path,
                                                                         tmp_path: Path) -> None:
    labels = tmp_path / "pred"
    result = run_inference(InferOptions(f"cityscapes-vps:{bench}", models[0], smooth="flow", save_labels=labels,
                                        panoptic=True))
    metrics = result.report["metrics"]
    labelled = sorted((bench / "val" / "img").iterdir())
    frames = [p for p in sorted((bench / "val" / "img_all").iterdir())
              if p.stem not in {f"{vps.parse_frame_name(q.name).plain}_leftImg8bit" for q in labelled}]
    # named after the frames: labelled ones after their img/ file (image id), the others after img_all/
    assert sorted(p.name for p in labels.glob("*.png")) == sorted(p.name for p in [*frames, *labelled])
    # pan_pred/ + pred.json hold the labelled frames alone, in the ground-truth JSON's order: the official
    # eval_vpq.py (mcahny/vps tools/) pairs prediction and ground-truth annotations by position
    assert len(frames) == 16 and sorted(p.stem for p in (labels / "pan_pred").glob("*.png")) == sorted(
        vps.parse_frame_name(q.name).stem for q in labelled)
    gt_ids = [img["id"] for img in json.loads(vps.json_path(bench, "val").read_text())["images"]]
    assert [a["image_id"] for a in json.loads((labels / "pred.json").read_text())["annotations"]] == gt_ids
    official = evaluate_folder(labels, bench).to_json()  # pan_pred/ + pred.json
    assert official["pred_format"] == "official"
    assert official["miou"] == metrics["miou"] and official["vpq"] == metrics["vpq"]
    (labels / "pred.json").unlink()
    for png in (labels / "pan_pred").iterdir():
        png.unlink()
    (labels / "pan_pred").rmdir()
    as_labels = evaluate_folder(labels, bench).to_json()  # the train-id PNGs alone
    assert as_labels["pred_format"] == "labels"
    assert (as_labels["miou"], as_labels["vpq"], as_labels["tc"]) == (metrics["miou"], metrics["vpq"], metrics["tc"])
    assert read_label_png(labels / frames[0].name).shape == (H, W)


def test_cityscapes_seq_dataset_gives_miou_and_tc(models: tuple[Path, Path], tmp_path: Path) -> None:
    root = make_cityscapes_seq(tmp_path / "cs")  # 3 snippets of 5 frames (16x32), one label each
    report = run_inference(InferOptions(f"cityscapes-seq:{root}", models[0], smooth="none", warmup=0,
                                        input_size="native")).report
    assert report["frames"]["processed"] == 15
    metrics = report["metrics"]
    assert metrics["vpq"] is None and metrics["tc"] is not None
    seg = Stream(InferOptions(f"cityscapes-seq:{root}", models[0], smooth="none")).segmenter
    cm = ConfusionMatrix(15)  # the labelled frames scored by hand
    for label in sorted((root / "gtFine" / "val").glob("*/*_labelIds.png")):
        frame_path = root / "leftImg8bit_sequence" / "val" / label.parent.name / label.name.replace(
            "gtFine_labelIds", "leftImg8bit")
        rgb = vps.read_rgb_png(frame_path)
        batch = normalise(rgb, META.normalization)
        cm.update(seg.predict(batch)[0].argmax(0).astype(np.uint8),
                  CITYSCAPES_LUT["viper15"][cv2.imread(str(label), cv2.IMREAD_UNCHANGED)])
    assert metrics["miou"] == pytest.approx(cm.miou(), abs=1e-4)


def test_an_unlabelled_split_streams_without_metrics(models: tuple[Path, Path], bench: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    result = run_inference(InferOptions(f"cityscapes-vps:{bench}", models[0], split="train", warmup=0))
    assert result.report["metrics"] is None and result.scores is None
    assert result.report["frames"]["processed"] == 10 and "no labels for split 'train'" in caplog.text


# --- sources through the CLI, report schema -------------------------------------------------

def check_report_schema(report: dict, processed: int) -> None:
    assert list(report) == ["frames", "fps", "latency_ms", "backend", "provider", "precision", "device",
                            "input_size", "reconnects", "metrics", "outputs", "stopped_by", "errors"]
    assert list(report["frames"]) == ["read", "processed", "dropped", "corrupt"]
    assert report["frames"]["processed"] == processed and report["fps"] > 0
    assert list(report["latency_ms"]) == list(STAGES)
    for stage in STAGES:
        values = report["latency_ms"][stage]
        assert list(values) == ["p50", "p95", "p99"] and 0 <= values["p50"] <= values["p95"] <= values["p99"]
    total = report["latency_ms"]["total"]["p50"]
    assert total >= report["latency_ms"]["inference"]["p50"] > 0
    assert (report["backend"], report["provider"], report["precision"], report["device"]) == \
        ("ort", "CPUExecutionProvider", "fp32", "cpu")
    assert isinstance(report["reconnects"], int) and report["errors"] == []
    for entry in report["outputs"].values():
        assert list(entry) == ["path", "written", "complete", "error", "kept"] and entry["complete"]


def test_video_file_through_the_cli(models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    clip = write_video(tmp_path / "clip.mp4", 12)
    out = tmp_path / "out"
    code, output = invoke(clip, "--model", models[0], "--max-frames", 9, "--warmup", 2, "--show",
                          "--save-video", out / "overlay.avi", "--save-labels", out / "labels",
                          "--save-jsonl", out / "frames.jsonl", "--report", out / "report.json")
    assert code == 0, output
    assert "--show: no display" in caplog.text  # and the run goes on without a window
    assert "latency per frame" in output and "9 frames processed" in output
    report = json.loads((out / "report.json").read_text())
    check_report_schema(report, 9)
    assert report["metrics"] is None and report["frames"]["read"] == 9
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"clip_{i:06d}.png" for i in range(9)]
    lines = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [line["name"] for line in lines] == [f"clip_{i:06d}" for i in range(9)]
    assert list(lines[0]["latency_ms"]) == list(STAGES) and sum(lines[3]["classes"].values()) == pytest.approx(1)
    cap = cv2.VideoCapture(str(out / "overlay.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 9
    cap.release()
    assert sorted(p.name for p in out.iterdir()) == ["frames.jsonl", "labels", "overlay.avi", "report.json"]


def test_folder_and_glob_through_the_cli(models: tuple[Path, Path], tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "frames", 12)
    code, output = invoke(folder, "--model", models[0], "--smooth", "ema", "--report", tmp_path / "a.json",
                          "--save-labels", tmp_path / "labels", "--input-size", "32x64")
    assert code == 0, output
    check_report_schema(json.loads((tmp_path / "a.json").read_text()), 12)
    names = sorted((p.name for p in (tmp_path / "labels").iterdir()), key=lambda n: int(n[5:-4]))
    assert names == [f"frame{i}.png" for i in range(12)]
    assert read_label_png(tmp_path / "labels" / "frame0.png").shape == (H, W)  # back at the frame's size
    code, output = invoke(f"{folder}/frame1*.png", "--model", models[0], "--report", tmp_path / "b.json")
    assert code == 0, output
    assert json.loads((tmp_path / "b.json").read_text())["frames"]["processed"] == 3  # frame1, frame10, frame11


def test_a_missing_camera_device_is_one_clear_error(models: tuple[Path, Path], tmp_path: Path) -> None:
    code, output = invoke("/dev/video99", "--model", models[0], "--report", tmp_path / "r.json")
    assert code == 1 and output.startswith("error: /dev/video99: no such video device (video devices present:")
    assert len(output.strip().splitlines()) == 1 and not (tmp_path / "r.json").exists()


# --- faults: one line, non-zero exit, nothing written ---------------------------------------

def fake_tensorrt(version: str) -> types.ModuleType:
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    return module


@pytest.mark.parametrize("case, code, message", [
    ("unreadable", 1, "bad.onnx: cannot load ONNX model"),
    ("input-size", 2, "static.onnx: input is fixed at 64x128 (HxW); it cannot run at 32x64"),
    ("no-tensorrt", 1, "model.engine: needs the Python package 'tensorrt'"),
    ("other-tensorrt", 1, "model.engine: this engine cannot run here: built with TensorRT 10.3.0, this machine has "
                          "10.9.1"),
    ("label-space", 1, "cs19.onnx: its 19 classes (cityscapes19) are not those of a label space"),
    ("panoptic", 2, "--panoptic writes pan_pred/ + pred.json into the --save-labels folder"),
    ("bad-size", 2, "--input-size '64': expected HxW"),
    ("huge-size", 2, "--input-size 20000x20000: height and width must be within 16..4096 px"),
    ("tiny-size", 2, "--input-size 1x1: height and width must be within 16..4096 px"),
    ("max-frames", 2, "--max-frames must be >= 1, got 0"),
    ("device", 2, "--device 'gpu': expected cpu, cuda or cuda:N"),
    ("report-dir", 2, "--report {out}: needs a file name, this is a folder"),
    ("report-proc", 1, "--report /proc/r.json: cannot write there"),
    ("video-proc", 1, "--save-video /proc/v.mp4: cannot write there"),
    ("video-gif", 2, "--save-video {out}/v.gif: unsupported container .gif"),
    ("labels-file", 2, "--save-labels {out}/labels: needs a folder, this is a file"),
    ("same-file", 2, "--save-jsonl {out}/r.json: the same file as --report"),
])
def test_faults_are_one_line_with_their_exit_code_and_write_nothing(
        models: tuple[Path, Path], bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str,
        code: int, message: str) -> None:
    """Exit 2 for a bad option, 1 for a model, source or output that fails; one line; no file written."""
    source, model, extra = str(write_folder(tmp_path / "frames", 3)), models[0], []
    outputs = tmp_path / "out"
    paths = {"--save-labels": outputs / "labels", "--save-video": outputs / "v.mp4",
             "--save-jsonl": outputs / "f.jsonl", "--report": outputs / "r.json"}
    if case == "unreadable":
        model = tmp_path / "bad.onnx"
        model.write_bytes(b"\x08\x01garbage")
    elif case == "input-size":
        model, extra = export_onnx(tiny_model(), tmp_path / "static.onnx", dynamic=False), ["--input-size", "32x64"]
    elif case in ("no-tensorrt", "other-tensorrt"):
        model, extra = tmp_path / "model.engine", ["--device", "cuda:0"]
        model.write_bytes(b"plan")
        build = {"tensorrt_version": "10.3.0", "compute_capability": "8.7"}
        (tmp_path / "model.engine.json").write_text(json.dumps({"meta": META.to_json(), "build": build}))
        monkeypatch.setitem(sys.modules, "tensorrt", None if case == "no-tensorrt" else fake_tensorrt("10.9.1"))
    elif case == "label-space":
        cs19 = ModelMeta(classes=tuple(f"c{i}" for i in range(19)), palette=((0, 0, 0),) * 19,
                         label_space="cityscapes19")
        model, source = with_meta(models[0], tmp_path / "cs19.onnx", cs19), f"cityscapes-vps:{bench}"
    elif case == "panoptic":
        del paths["--save-labels"]
    elif case in ("bad-size", "huge-size", "tiny-size"):
        extra = ["--input-size", {"bad-size": "64", "huge-size": "20000x20000", "tiny-size": "1x1"}[case]]
    elif case == "max-frames":
        extra = ["--max-frames", "0"]
    elif case == "device":
        extra = ["--device", "gpu"]
    elif case == "report-dir":
        outputs.mkdir()
        paths["--report"] = outputs
    elif case == "report-proc":
        paths["--report"] = Path("/proc/r.json")
    elif case == "video-proc":
        paths["--save-video"] = Path("/proc/v.mp4")
    elif case == "video-gif":
        paths["--save-video"] = outputs / "v.gif"
    elif case == "labels-file":
        outputs.mkdir()
        (outputs / "labels").write_text("a file")
    elif case == "same-file":
        paths["--save-jsonl"] = paths["--report"]
    flags = [str(a) for option, path in paths.items() for a in (option, path)]
    got, output = invoke(source, "--model", model, *extra, *flags, "--panoptic")
    assert got == code and output.startswith("error: ") and message.format(out=outputs) in output, output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output
    written = [p for p in outputs.rglob("*") if p.is_file() and p.name != "labels"]
    assert not written, written  # folders may have been made by the checks; no file, no probe, no .partial


def test_an_unwritable_report_is_found_before_the_first_frame(models: tuple[Path, Path], tmp_path: Path) -> None:
    seen: list[int] = []
    with pytest.raises(OutputError, match=r"^--report /proc/vsda/r\.json: cannot create the folder /proc/vsda"):
        run_inference(InferOptions(str(write_folder(tmp_path / "f", 3)), models[0], report=Path("/proc/vsda/r.json"),
                                   save_jsonl=tmp_path / "f.jsonl"), on_frame=lambda out: seen.append(out.index))
    assert seen == [] and not (tmp_path / "f.jsonl").exists()


def test_faulty_live_source_counts_corrupt_frames_and_reconnects(models: tuple[Path, Path]) -> None:
    """A camera that returns a corrupt frame, drops out, comes back, then dies for good."""
    frames = moving_frames(13)
    gate = threading.Semaphore(1)  # the camera waits for the consumer: no frame is dropped
    sessions = [FakeCapture([*frames[:5], CORRUPT, *frames[5:9], FAIL], gate=gate),
                FakeCapture(frames[9:], gate=gate)]
    source = open_source("camera0", capture_factory=_scripted_factory(sessions, []), backoff_s=0.0,
                         max_reconnects=2)
    seen = []
    stream = Stream(InferOptions("camera0", models[0], warmup=0), on_frame=lambda out: (seen.append(out.index),
                                                                                       gate.release()), source=source)
    result = stream.run()
    assert result.error == "camera0: stream lost; 2 reconnect attempts failed"
    assert result.report["frames"] == {"read": 13, "processed": 13, "dropped": 0, "corrupt": 1}
    assert result.report["reconnects"] == 3  # one that worked, two that did not
    assert seen == [0, 1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14]  # slots 5 (corrupt) and 10 (drop-out) lost
    assert stream.pipeline.smoother.restarts == 3  # the first frame and the two gaps


# --- stopping and running long -----------------------------------------------------------------

def test_sigterm_stops_cleanly_with_report_and_playable_video(models: tuple[Path, Path], tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "long", 300)  # 10 s at 30 FPS under --realtime
    video, report, jsonl = tmp_path / "out.mp4", tmp_path / "report.json", tmp_path / "frames.jsonl"
    cmd = [sys.executable, "-m", "vsda_deploy.cli", str(folder), "--model", str(models[0]), "--realtime",
           "--save-video", str(video), "--report", str(report), "--save-jsonl", str(jsonl), "--warmup", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    partial = tmp_path / ".frames.partial.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) >= 10:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    data = json.loads(report.read_text())
    processed = data["frames"]["processed"]
    assert 10 <= processed < 300 and "stopped by SIGTERM" in out
    assert len(jsonl.read_text().splitlines()) == processed
    cap = cv2.VideoCapture(str(video))
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    cap.release()
    assert decoded == processed
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial files left


def rss_bytes() -> int:
    """Return this process's resident set size."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc (Linux)")
def test_soak_2000_frames_memory_stays_flat(models: tuple[Path, Path], tmp_path: Path) -> None:
    clip = write_video(tmp_path / "soak.avi", 2000)
    samples: dict[int, int] = {}

    def sample(out) -> None:
        if out.index in (300, 1999):
            samples[out.index] = rss_bytes()

    result = run_inference(InferOptions(str(clip), models[0], smooth="flow", save_jsonl=tmp_path / "f.jsonl"),
                           on_frame=sample)
    assert result.report["frames"]["processed"] == 2000 and result.error is None
    growth = samples[1999] / samples[300] - 1
    assert growth < 0.05, f"RSS grew {100 * growth:.1f}% from frame 300 to 2000"
