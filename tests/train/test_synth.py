"""The synthetic sim-to-real benchmark: formats, determinism, persistence, domain gap, colour baseline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.data import CityscapesSeqDataset, build_dataset
from vsda_deploy.data.viper import viper_to_train
from vsda_deploy.labels import IGNORE_INDEX, VIPER15, VIPER_CAR_ID, VIPER_LUT
from vsda_deploy.metrics import ConfusionMatrix
from vsda_train.cli import app
from vsda_train.synth import SynthConfig, generate, total_frames
from vsda_train.synth import colour_baseline as cb
from vsda_train.synth import shapes as S
from vsda_train.synth.raster import _clip, hood_mask, rasterize
from vsda_train.synth.scene import CameraPath, SceneObject, Street
from vsda_train.synth.textures import fbm, value_noise
from vsda_train.synth.writers import TRAIN_TO_VIPER

TINY = SynthConfig(width=64, height=32, source_clips=2, source_val_clips=1, target_train_clips=2,
                   target_val_clips=2, frames=10)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, TINY)
    return out


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def _labels(root: Path) -> dict[str, bytes]:
    """Return ``{relative path: bytes}`` of every label file (VIPER cls/inst, Cityscapes gtFine,
    Cityscapes-VPS labelmap and panoptic PNGs, the JSONs)."""
    def is_label(p: Path) -> bool:
        return bool({"cls", "inst", "gtFine", "labelmap"} & set(p.parts)) or p.parent.name.startswith("panoptic") \
            or (p.suffix == ".json" and p.name != "summary.json")
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and is_label(p)}


def _viper_instances(path: Path) -> np.ndarray:
    """Return 256 G + B of a VIPER inst PNG (R is the class)."""
    bgr = _read(path).astype(np.int64)
    assert bgr.dtype != np.uint16 and bgr.ndim == 3
    return 256 * bgr[..., 1] + bgr[..., 0]


# --- determinism and the output folder --------------------------------------------------------

def test_same_seed_gives_byte_identical_labels(data: Path, tmp_path: Path) -> None:
    generate(tmp_path / "again", TINY)
    first, again = _labels(data), _labels(tmp_path / "again")
    # cls + inst of 3 source clips; labelmap of 2 x 2 train frames; labelmap, panoptic_inst and
    # panoptic_video of 2 x 2 val frames; gtFine of 4 clips' Cityscapes frame; the oracle's
    # 2 x 10 gtFine; the two JSONs
    assert len(first) == 2 * 3 * 10 + 4 + 4 * 3 + 4 + 2 * 10 + 2 and first.keys() == again.keys()
    assert all(first[k] == again[k] for k in first)
    other = SynthConfig(**{**TINY.__dict__, "seed": 1})
    generate(tmp_path / "other", other)
    changed = sum(first[k] != v for k, v in _labels(tmp_path / "other").items() if k in first)
    assert changed > len(first) // 2


def test_worker_processes_write_the_same_bytes(tmp_path: Path) -> None:
    # clips rendered in 2 spawned processes, more clips than the look-ahead of 4: every file
    # (images, labels, JSONs, videos, contact sheet, summary) equals the single-process tree's
    config = SynthConfig(**{**TINY.__dict__, "source_clips": 6})
    generate(tmp_path / "one", config)
    generate(tmp_path / "two", config, workers=2)
    one = {p.relative_to(tmp_path / "one"): p.read_bytes()
           for p in sorted((tmp_path / "one").rglob("*")) if p.is_file()}
    two = {p.relative_to(tmp_path / "two"): p.read_bytes()
           for p in sorted((tmp_path / "two").rglob("*")) if p.is_file()}
    assert len(one) > 6 * 10 * 3 and one.keys() == two.keys()
    assert [k for k in one if one[k] != two[k]] == []


def test_refuses_non_empty_output_without_force(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=f"^{tmp_path}: .*--force"):
        generate(tmp_path, TINY)
    result = CliRunner().invoke(app, ["synth", str(tmp_path), "--width", "64", "--height", "32"])
    assert result.exit_code == 1
    assert "--force" in result.output and len(result.output.strip().splitlines()) == 1
    small = ["--width", "32", "--height", "16", "--source-clips", "1", "--source-val-clips", "0",
             "--target-train-clips", "1", "--target-val-clips", "1", "--frames", "5", "--force"]
    result = CliRunner().invoke(app, ["synth", str(tmp_path), *small])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"  # --force removes only what synth writes
    assert json.loads((tmp_path / "summary.json").read_text())["counts"]["target_val"]["labelled_frames"] == 1


def test_progress_ticks_once_per_frame(tmp_path: Path) -> None:
    config = SynthConfig(width=32, height=16, source_clips=1, source_val_clips=1, target_train_clips=1,
                         target_val_clips=1, frames=5)
    ticks = []
    generate(tmp_path, config, on_frame=lambda: ticks.append(1))
    assert len(ticks) == total_frames(config) == 20


def test_bad_option_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--frames", "3"])
    assert result.exit_code == 2 and "--frames" in result.output


# --- source: the VIPER tree ----------------------------------------------------------------------

def test_train_to_viper_inverts_the_viper_lut() -> None:
    assert all(VIPER_LUT[TRAIN_TO_VIPER[c]] == c for c in range(VIPER15.num_classes))
    assert TRAIN_TO_VIPER[IGNORE_INDEX] == 0 and VIPER_LUT[0] == IGNORE_INDEX


def test_viper_tree_classes_instances_and_ego_vehicle(data: Path) -> None:
    cls_files = sorted((data / "source" / "train" / "cls" / "001").glob("001_*.png"))
    assert [p.name for p in cls_files] == [f"001_{i:05d}.png" for i in range(TINY.frames)]
    for p in cls_files:
        raw = _read(p)
        inst = _viper_instances(data / "source" / "train" / "inst" / "001" / p.name)
        assert raw.dtype == np.uint8 and raw.ndim == 2
        assert (_read(data / "source" / "train" / "inst" / "001" / p.name)[..., 2] == raw).all()  # R: the class
        assert _read(data / "source" / "train" / "img" / "001" / p.name).shape == (32, 64, 3)
        assert raw[-1, 32] == VIPER_CAR_ID  # the hood, bottom centre
        label = viper_to_train(raw, p)
        assert label[-1, 32] == IGNORE_INDEX  # ... which the VIPER loader ignores as ego vehicle
        things = np.isin(label, sorted(VIPER15.things))
        assert (inst[things] > 0).all() and (inst[~things] == 0).all()  # no real car merged into the hood


def test_instance_ids_persist_over_a_clip(data: Path) -> None:
    root = data / "source" / "train"
    owner: dict[int, set[int]] = {}
    frames_seen: dict[int, int] = {}
    for i in range(TINY.frames):
        label = VIPER_LUT[_read(root / "cls" / "002" / f"002_{i:05d}.png")]
        inst = _viper_instances(root / "inst" / "002" / f"002_{i:05d}.png")
        for iid in np.unique(inst[inst > 0]).tolist():
            owner.setdefault(iid, set()).update(np.unique(label[inst == iid]).tolist())
            frames_seen[iid] = frames_seen.get(iid, 0) + 1
    assert all(len(c) == 1 for c in owner.values())  # an id never changes class
    assert sum(n == TINY.frames for n in frames_seen.values()) >= 3  # objects keep their id throughout


# --- target: the Cityscapes and Cityscapes-VPS trees -------------------------------------------------

def test_cityscapes_vps_tree_as_prepare_data_leaves_it(data: Path) -> None:
    target = data / "target"
    assert sorted(p.name for p in (target / "train").iterdir()) == ["img", "labelmap"]
    assert sorted(p.name for p in (target / "val").iterdir()) == [
        "img", "img_all", "labelmap", "panoptic_inst", "panoptic_video"]
    val = sorted(p.name for p in (target / "val" / "img").iterdir())
    # videos 3, 4 (train clips are 1, 2); FFFF counts labelled frames over the clips; frames 5 and 10
    # of a clip are labelled, the 10th (the last, when a clip is shorter than 20) the Cityscapes one
    assert val == ["0003_0005_munster_000000_000004_newImg8bit.png", "0003_0006_munster_000000_000009_leftImg8bit.png",
                   "0004_0007_frankfurt_000000_000579_newImg8bit.png",
                   "0004_0008_frankfurt_000000_000584_leftImg8bit.png"]
    assert sorted(p.name for p in (target / "val" / "img_all").iterdir())[:2] == [
        "frankfurt_000000_000575_leftImg8bit.png", "frankfurt_000000_000576_leftImg8bit.png"]
    assert len(list((target / "val" / "img_all").iterdir())) == 2 * TINY.frames
    for name in val:
        label = vps.label_file_name(name)
        assert _read(target / "val" / "labelmap" / label).dtype == np.uint8
        assert _read(target / "val" / "panoptic_inst" / label).dtype == np.uint16
        assert _read(target / "val" / "panoptic_video" / label).shape == (32, 64, 3)
    frame = target / "val" / "img_all" / "munster_000000_000004_leftImg8bit.png"
    assert os.stat(frame).st_ino == os.stat(data / "leftImg8bit_sequence" / "val" / "munster" / frame.name).st_ino
    assert (data / "gtFine" / "val" / "munster" / "munster_000000_000009_gtFine_labelIds.png").is_file()
    info = vps.load_json(vps.all_info_path(target, "val"))["images"]
    assert info[0] == {"id": 30001, "file_name": "munster_000000_000000_leftImg8bit.png", "width": 64, "height": 32}


def test_obj_id_0_and_panoptic_video_agree_with_panoptic_inst(data: Path) -> None:
    target = data / "target"
    gt = vps.load_json(vps.json_path(target, "val"))
    assert [a["file_name"] for a in gt["annotations"]] == sorted(a["file_name"] for a in gt["annotations"])
    assert [i["id"] for i in gt["images"]] == [a["image_id"] for a in gt["annotations"]]
    assert gt["categories"] == vps.categories() and gt["categories"][8]["name"] == "vegitation"
    obj_zero = 0
    for image, ann in zip(gt["images"], gt["annotations"]):
        assert vps.label_file_name(image["file_name"]) == ann["file_name"]
        pan = _read(target / "val" / "panoptic_inst" / ann["file_name"]).astype(np.int64)
        obj_zero += int(((pan >= 1000) & (pan % 1000 == 0)).any())
        seg = vps.rgb_to_id(vps.read_rgb_png(target / "val" / "panoptic_video" / ann["file_name"]))
        pairs = {(a, b) for a, b in zip(pan.ravel().tolist(), seg.ravel().tolist())}
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})  # one segment per value
        assert {s["area"] for s in ann["segments_info"]} and sum(s["area"] for s in ann["segments_info"]) \
            == int((pan != 255).sum())
    assert obj_zero == len(gt["annotations"])  # every labelled frame has an object numbered 0


def test_readers_on_the_benchmark(data: Path) -> None:
    target = f"cityscapes-vps:{data / 'target'}"
    assert len(build_dataset(target, split="val")) == 4
    assert len(build_dataset(target, split="train", labels=False)) == 2 * (TINY.frames - 1)
    assert len(build_dataset(target, split="train", labels=False, frames="labelled")) == 4
    oracle = build_dataset(f"cityscapes-seq:{data / 'oracle'}", split="train")
    assert len(oracle) == 2 * (TINY.frames - 1) and oracle[0].meta["name"] == "frankfurt_000000_000276.png"
    names = {build_dataset(target, split="train", labels=False)[i].meta["name"] for i in range(18)}
    assert names == {oracle[i].meta["name"] for i in range(18)}  # pseudo-label accuracy matches by name
    assert len(build_dataset(f"cityscapes-seq:{data}", split="val")) == 4  # each clip's Cityscapes frame


def test_val_videos_read_back(data: Path) -> None:
    for video in ("0001", "0002"):
        cap = cv2.VideoCapture(str(data / "videos" / f"val_{video}.mp4"))
        count = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            assert frame.shape == (32, 64, 3)
            count += 1
        assert count == TINY.frames


def test_summary_reports_class_frequencies(data: Path) -> None:
    summary = json.loads((data / "summary.json").read_text())
    assert summary["seed"] == 0 and summary["config"]["width"] == 64
    for split in ("source_train", "target_train", "target_val"):
        freq = summary["classes"][split]
        assert set(freq["pixels_percent"]) == set(VIPER15.classes)
        assert sum(freq["pixels_percent"].values()) + freq["void_percent"] == pytest.approx(100, abs=0.05)
        for stuff in ("road", "building", "sky"):
            assert freq["frames_percent"][stuff] == 100.0
    assert (data / "contact_sheet.png").stat().st_size > 10_000


# --- the domain gap ------------------------------------------------------------------------------

def _road_interiors(img_dir: Path, labels: list[np.ndarray], images: list[Path]) -> np.ndarray:
    """Return |Laplacian| of the gray images on road pixels away from any edge."""
    out = []
    for label, path in zip(labels, images):
        gray = cv2.cvtColor(_read(path), cv2.COLOR_BGR2GRAY).astype(np.float32)
        inner = cv2.erode((label == 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        out.append(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[inner])
    return np.concatenate(out)


def test_target_is_textured_noisy_and_darker_than_source(data: Path) -> None:
    src = sorted((data / "source" / "train" / "img" / "001").glob("*.png"))
    src_labels = [VIPER_LUT[_read(data / "source" / "train" / "cls" / "001" / p.name)] for p in src]
    oracle = CityscapesSeqDataset(data / "oracle", "train", pad_start=True)
    tgt = [Path(r.path) for r in oracle.records if r.video == oracle.records[0].video]
    tgt_labels = [oracle[i].label for i, r in enumerate(oracle.records) if r.video == oracle.records[0].video]
    src_hf, tgt_hf = _road_interiors(data, src_labels, src), _road_interiors(data, tgt_labels, tgt)
    assert np.median(src_hf) == 0  # flat simulator shading: no texture inside a surface
    assert np.median(tgt_hf) > 2  # asphalt grain, markings, sensor noise, JPEG
    src_l = np.mean([cv2.cvtColor(_read(p), cv2.COLOR_BGR2GRAY).mean() for p in src])
    tgt_l = np.mean([cv2.cvtColor(_read(p), cv2.COLOR_BGR2GRAY).mean() for p in tgt])
    assert tgt_l < src_l  # the camera under-exposes the street


# --- geometry ------------------------------------------------------------------------------------

def test_clip_and_hood() -> None:
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], float)
    assert _clip(square, 0, 1.0, True).tolist() == [[1, 0], [2, 0], [2, 2], [1, 2]]
    assert len(_clip(square, 1, 3.0, True)) == 0
    hood = hood_mask(64, 32, 0.1)
    assert hood[-1, 32] and hood[-3, 32] and not hood[-5, 32] and not hood[:20].any()
    assert not hood_mask(64, 32, 0).any()


def test_nearer_car_occludes_farther_one() -> None:
    def car(inst: int, z: float) -> SceneObject:
        shape = S.car(inst, 4.0, 1.8, 1.0).build()
        return SceneObject(shape=shape, x=0.0, z=z, vz=0.0, heading=1.0, band=0, footprint=(-.9, .9, -2, 2),
                           tone=0, jitter=np.zeros(3), seed=inst)
    camera = CameraPath(x=0.0, height=1.5, pitch=0.0, speed=0.5, pan=0.0, pan_rate=0.0, pan_phase=0.0,
                        focal=64.0)
    ground = S.ShapeBuilder().ground(-50, 50, -10, 500, S.C["road"]).build()
    # listed far car last: the painter's order must not depend on the list order
    street = Street(ground=ground, objects=[car(1, 12.0), car(2, 30.0)], band_order=[0], camera=camera,
                    sun=np.array([0, 1.0, 0]), lane_width=3.5, lanes=1)
    geom = rasterize(street, 0, 64, 32, hood_mask(64, 32, 0))
    inst = geom.instance()
    assert inst[17, 32] == 1  # the near car covers the image centre below the horizon
    assert (inst == 2).sum() < (inst == 1).sum()
    assert geom.semantic()[-1, 5] == S.C["road"] and geom.semantic()[0, 5] == S.C["sky"]
    geom_later = rasterize(street, 10, 64, 32, hood_mask(64, 32, 0))  # 5 m closer: the near car grows
    assert (geom_later.instance() == 1).sum() > (inst == 1).sum()


def test_value_noise_is_smooth_bounded_and_deterministic() -> None:
    x = np.linspace(-3, 3, 601)
    v = value_noise(x, 0.5 * x, 7)
    assert v.min() >= 0 and v.max() <= 1 and np.abs(np.diff(v)).max() < 0.05
    assert (value_noise(x, 0.5 * x, 7) == v).all() and not (value_noise(x, 0.5 * x, 8) == v).all()
    lattice = value_noise(np.arange(5.0), np.zeros(5), 3)  # at lattice points: the hashed values
    assert lattice.std() > 0.05 and (0 <= fbm(x, x, 1)).all() and (fbm(x, x, 1) <= 1).all()


# --- the colour baseline ---------------------------------------------------------------------------

def test_scores_of_a_known_confusion_matrix() -> None:
    conf = ConfusionMatrix(15)
    m = conf.matrix
    m[0, 0], m[0, 2], m[2, 2] = 6, 2, 2  # road: 6 right, 2 called building
    r = cb.scores(conf)
    assert r["pixel_accuracy"] == 80.0
    assert r["iou"]["road"] == 75.0 and r["iou"]["building"] == 50.0 and r["iou"]["sky"] is None
    assert r["miou"] == 62.5


def test_nearest_class_mean_prediction() -> None:
    means = np.full((15, 3), np.nan)
    means[0] = cb.to_lab(np.array([[[90, 90, 90]]], np.uint8))[0]
    means[8] = cb.to_lab(np.array([[[120, 170, 230]]], np.uint8))[0]
    rgb = np.array([[[80, 85, 90], [130, 175, 220]]], np.uint8)
    assert cb.predict(means, rgb).tolist() == [[0, 8]]


def test_colour_baseline_on_a_small_benchmark(data: Path, tmp_path: Path) -> None:
    result = cb.run(data, tmp_path / "pred")
    for key in ("source_fitted", "target_fitted"):
        assert 0 < result[key]["pixel_accuracy"] <= 100 and 0 < result[key]["miou"] <= 100
    assert result["frames"] == {"source": 2 * TINY.frames, "target_train": 2 * TINY.frames, "target_val": 4}
    assert result["gap_pixel_accuracy"] == pytest.approx(
        result["target_fitted"]["pixel_accuracy"] - result["source_fitted"]["pixel_accuracy"], abs=0.02)
    preds = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert preds == sorted(p.name for p in (data / "target" / "val" / "img").iterdir())
    pred = _read(tmp_path / "pred" / preds[0])
    assert pred.dtype == np.uint8 and pred.shape == (32, 64) and pred.max() < 15
    from typer.testing import CliRunner

    from vsda_train.cli import app

    res = CliRunner().invoke(app, ["colour-baseline", str(data), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["target_fitted"]["miou"] == result["target_fitted"]["miou"]
    assert CliRunner().invoke(app, ["colour-baseline", str(tmp_path / "nowhere")]).exit_code == 2


def test_source_frames_can_have_their_own_size(tmp_path) -> None:
    """--source-size: VIPER frames at 1920x1080 beside Cityscapes at 2048x1024 (here scaled down 16x)."""
    import cv2

    from vsda_train.synth.config import SynthConfig
    from vsda_train.synth.generate import generate

    generate(tmp_path, SynthConfig(width=128, height=64, source_size=(68, 120), source_clips=1, source_val_clips=0,
                                   target_train_clips=1, target_val_clips=1, frames=5))
    src = cv2.imread(str(next((tmp_path / "source" / "train" / "img").rglob("*.png"))))
    tgt = cv2.imread(str(next((tmp_path / "leftImg8bit_sequence").rglob("*.png"))))
    assert src.shape[:2] == (68, 120) and tgt.shape[:2] == (64, 128)
    assert cv2.imread(str(tmp_path / "contact_sheet.png")).shape[1] == 4 * (512 + 4)


def _extent(shape: S.Shape, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the (min, max) xyz corners of the faces of class ``cls``."""
    face = np.repeat(np.arange(shape.num_faces), np.diff(shape.starts))
    verts = shape.verts[shape.cls[face] == cls]
    return verts.min(0), verts.max(0)


def test_furniture_scale_sizes_light_heads_and_sign_plates() -> None:
    """A light head is 0.34 m wide and 0.95 m tall ending 0.35 m below the pole top; a square plate
    is 0.76 m wide with its lower edge 0.28 m below the pole top. ``size`` multiplies both."""
    light, sign = VIPER15.classes.index("traffic light"), VIPER15.classes.index("traffic sign")
    for size in (1.0, 2.0):
        lo, hi = _extent(S.traffic_light(4.0, 0.0, 0, size).build(), light)
        np.testing.assert_allclose([hi[0] - lo[0], hi[1] - lo[1], hi[1]], [.34 * size, .95 * size, 3.65])
        lo, hi = _extent(S.traffic_sign(2.4, 2, size).build(), sign)
        np.testing.assert_allclose([hi[0] - lo[0], lo[1], hi[1]], [.76 * size, 2.12, 2.12 + .76 * size], atol=1e-9)


def test_layout_scales_reach_the_scene() -> None:
    """A street of real-size furniture and two-wheelers next to one at 2x: the same draws, twice as tall."""
    from dataclasses import replace

    from vsda_train.synth.config import Layout
    from vsda_train.synth.scene import build_street

    def heights(layout: Layout) -> dict[int, float]:
        street = build_street(layout, np.random.default_rng(7), frames=5, width=64)
        out: dict[int, float] = {}
        for obj in street.objects:
            if obj.shape is None:
                continue
            for cls in (VIPER15.classes.index("traffic sign"), VIPER15.classes.index("bicycle")):
                if (obj.shape.cls == cls).any():
                    lo, hi = _extent(obj.shape, cls)
                    out.setdefault(cls, float(hi[1] - lo[1]))
        return out

    real = heights(replace(Layout(), furniture_scale=1.0, two_wheeler_scale=1.0))
    big = heights(replace(Layout(), furniture_scale=2.0, two_wheeler_scale=2.0))
    assert real.keys() == big.keys() and len(real) == 2
    for cls in real:
        assert big[cls] == pytest.approx(2 * real[cls])
