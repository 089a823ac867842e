"""Scoring prediction folders against Cityscapes-VPS ground truth (vsda_deploy/evaluation.py).

The fixture is a tiny Cityscapes-VPS split written with the codec: one video of 16
frames (``img_all``), labelled every 5th frame (``img``, ``panoptic_video`` + JSON,
``panoptic_inst``), a textured car driving right 1 px per frame past a static person.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.evaluation import evaluate_folder, evaluate_predictor, list_gt, parse_gt_spec

ROAD, BUILDING, PERSON, CAR, V = 0, 2, 9, 10, 255
H, W = 40, 64
FRAMES = 16
LABELLED = (0, 5, 10, 15)


def stem(t: int, video: int = 1) -> str:
    return f"{video:04d}_{t:04d}_frankfurt_000000_{t:06d}"


def scene(t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(rgb, semantic, instance)`` of frame ``t``."""
    sem = np.full((H, W), ROAD, np.uint8)
    sem[:14] = BUILDING
    sem[:2] = V
    inst = np.zeros((H, W), np.int32)
    x = 6 + t
    sem[18:30, x:x + 14], inst[18:30, x:x + 14] = CAR, 4
    sem[12:34, 48:54], inst[12:34, 48:54] = PERSON, 7
    sem[33:37, 56:60] = CAR  # crowd region
    rng = np.random.default_rng(0)
    rgb = (rng.random((H, W, 3)) * 100).astype(np.uint8)  # static textured background
    car = 140 + (np.random.default_rng(1).random((12, 14, 3)) * 110).astype(np.uint8)
    rgb[18:30, x:x + 14] = car  # the texture moves with the car
    rgb[12:34, 48:54] = (200, 40, 60)
    return rgb, sem, inst


def write_split(root: Path, split: str = "val", json: bool = True, inst: bool = True) -> None:
    """Write the fixture split under ``root`` in the official on-disk formats."""
    images, annotations = [], []
    for t in range(FRAMES):
        rgb, sem, ins = scene(t)
        vps.write_rgb_png(root / split / "img_all" / f"{stem(t)}{vps.IMAGE_SUFFIX}", rgb)
        if t not in LABELLED:
            continue
        vps.write_rgb_png(root / split / "img" / f"{stem(t)}{vps.IMAGE_SUFFIX}", rgb)
        if inst:
            vps.write_panoptic_inst(root / split / "panoptic_inst" / f"{stem(t)}{vps.INST_SUFFIX}", sem, ins)
        seg, info = vps.to_segments(sem, ins)
        vps.write_rgb_png(root / split / "panoptic_video" / f"{stem(t)}{vps.VIDEO_GT_SUFFIX}", vps.id_to_rgb(seg))
        images.append({"id": stem(t), "file_name": f"{stem(t)}{vps.IMAGE_SUFFIX}", "height": H, "width": W})
        annotations.append({"image_id": stem(t), "file_name": f"{stem(t)}{vps.VIDEO_GT_SUFFIX}",
                            "segments_info": info})
    if json:
        vps.dump_json(vps.json_path(root, split),
                      {"images": images, "annotations": annotations, "categories": vps.categories()})


def write_label_preds(out: Path, frames: range | tuple = tuple(range(FRAMES)), edit=None) -> None:
    """Write one train-id PNG per frame (the GT semantic, optionally edited)."""
    out.mkdir(parents=True, exist_ok=True)
    for t in frames:
        sem = scene(t)[1]
        if edit is not None:
            sem = edit(t, sem)
        cv2.imwrite(str(out / f"{stem(t)}{vps.IMAGE_SUFFIX}"), sem)


def write_official_preds(out: Path, instance_of=lambda t, inst: inst) -> None:
    """Write ``pan_pred/`` + ``pred.json`` from the GT, with other segment ids than the GT's."""
    annotations = []
    for t in LABELLED:
        _, sem, inst = scene(t)
        seg, info = vps.to_segments(sem, instance_of(t, inst))
        seg = np.where(seg > 0, seg + 50, 0)  # ids need not match the GT's
        for s in info:
            s["id"] += 50
        vps.write_rgb_png(out / "pan_pred" / f"{stem(t)}.png", vps.id_to_rgb(seg))
        annotations.append({"image_id": stem(t), "file_name": f"{stem(t)}.png", "segments_info": info})
    vps.dump_json(out / "pred.json", {"annotations": annotations, "categories": vps.categories()})


@pytest.fixture(scope="module")
def gt_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vps")
    write_split(root)
    return root


def test_gt_listing_json_and_panoptic_inst_agree(gt_root: Path, tmp_path: Path) -> None:
    videos = list_gt(gt_root, "val")
    assert list(videos) == ["0001"] and [f.name.index for f in videos["0001"]] == list(LABELLED)
    write_split(tmp_path, json=False)
    fallback = list_gt(tmp_path, "val")["0001"]
    for a, b in zip(videos["0001"], fallback):
        sa, ia = a.read()
        sb, ib = b.read()
        assert a.segments_info is not None and b.segments_info is None
        assert (sa == sb).all() and ((ia > 0) == (ib > 0)).all()


def test_perfect_label_pngs_on_every_frame(gt_root: Path, tmp_path: Path) -> None:
    write_label_preds(tmp_path / "pred")
    res = evaluate_folder(tmp_path / "pred", gt_root, "val")
    out = res.to_json()
    assert out["miou"] == pytest.approx(100) and out["vpq"] == pytest.approx(100)
    assert out["vpq_k"] == pytest.approx({"0": 100, "5": 100, "10": 100, "15": 100})
    assert out["vpq_things"] == pytest.approx(100) and out["vpq_stuff"] == pytest.approx(100)
    assert out["iou"]["car"] == pytest.approx(100) and out["iou"]["bus"] is None
    assert res.frames == 4 and res.videos == 1 and res.pred_format == "labels"
    # 15 consecutive pairs; DIS flow follows the textured car up to a few boundary pixels
    assert out["tc_pairs"] == 15 and 95 < out["tc"] <= 100


def test_label_pngs_on_labelled_frames_only(gt_root: Path, tmp_path: Path) -> None:
    write_label_preds(tmp_path / "pred", LABELLED)
    res = evaluate_folder(tmp_path / "pred", gt_root, "val")
    assert res.to_json()["vpq"] == pytest.approx(100)  # ids linked over 5-frame gaps
    assert res.to_json()["tc"] is None and any("TC not measured" in n for n in res.notes)


def test_wrong_labels_lower_miou_by_hand(gt_root: Path, tmp_path: Path) -> None:
    def person_as_car(t: int, sem: np.ndarray) -> np.ndarray:
        return np.where(sem == PERSON, CAR, sem).astype(np.uint8)

    write_label_preds(tmp_path / "pred", edit=person_as_car)
    res = evaluate_folder(tmp_path / "pred", gt_root, "val")
    # per labelled frame: car 168 + crowd 16 px, person 132 px predicted car
    assert res.iou["person"] == pytest.approx(0)
    assert res.iou["car"] == pytest.approx(100 * 184 / (184 + 132))
    assert res.miou == pytest.approx((100 + 100 + 0 + 100 * 184 / 316) / 4)
    # person: an FN every window; car: a TP and the person as an FP car (the small car
    # component on the crowd region is no FP) -> 1 / (1 + 1/2)
    for k in (0, 5, 10, 15):
        assert res.vpq.per_class(k)[[PERSON, CAR]] == pytest.approx([0, 200 / 3])
    assert res.vpq.vpq("things") == pytest.approx(100 / 3)


def test_official_format_and_id_switch(gt_root: Path, tmp_path: Path) -> None:
    write_official_preds(tmp_path / "ok")
    res = evaluate_folder(tmp_path / "ok", gt_root, "val").to_json()
    assert res["vpq"] == pytest.approx(100) and res["miou"] == pytest.approx(100) and res["tc"] is None
    # the car changes id in frames 5 and 15: every tube of >= 2 frames splits it
    write_official_preds(tmp_path / "switch", lambda t, inst: np.where(inst == 4, 4 + (t % 10 == 5), inst))
    res = evaluate_folder(tmp_path / "switch", gt_root, "val").to_json()
    assert res["vpq_k"]["0"] == pytest.approx(100) and res["vpq_k"]["5"] < 100
    assert res["miou"] == pytest.approx(100)


def test_predictor_scores_like_the_folder(gt_root: Path) -> None:
    truth = {scene(t)[0].tobytes(): scene(t)[1] for t in range(FRAMES)}
    res = evaluate_predictor(lambda rgb: truth[rgb.tobytes()], gt_root, "val")
    assert res.miou == pytest.approx(100) and res.vpq.vpq() == pytest.approx(100) and res.tc_pairs == 15


def test_errors_name_the_file_or_frame(gt_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^kitti:/x: unknown ground-truth spec"):
        parse_gt_spec("kitti:/x")
    assert parse_gt_spec("cityscapes-vps:/data/vps") == Path("/data/vps")

    write_label_preds(tmp_path / "missing", (0, 5, 10))
    with pytest.raises(FileNotFoundError, match=f"missing: no prediction .* {stem(15)}"):
        evaluate_folder(tmp_path / "missing", gt_root)

    write_label_preds(tmp_path / "size", LABELLED)
    cv2.imwrite(str(tmp_path / "size" / f"{stem(10)}{vps.IMAGE_SUFFIX}"), np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match=f"{stem(10)}.*20x20"):
        evaluate_folder(tmp_path / "size", gt_root)

    write_label_preds(tmp_path / "ids", LABELLED, edit=lambda t, s: np.where(s == CAR, 40, s).astype(np.uint8))
    with pytest.raises(ValueError, match=f"{stem(0)}.*unknown class id.*40"):
        evaluate_folder(tmp_path / "ids", gt_root)

    write_official_preds(tmp_path / "seg")
    png = tmp_path / "seg" / "pan_pred" / f"{stem(5)}.png"
    ids = vps.rgb_to_id(vps.read_rgb_png(png))
    vps.write_rgb_png(png, vps.id_to_rgb(np.where(ids == ids[20, 10], 999, ids)))
    with pytest.raises(ValueError, match=r"pan_pred/.*: segment id\(s\) \[999\]"):
        evaluate_folder(tmp_path / "seg", gt_root)

    (tmp_path / "seg" / "pan_pred" / f"{stem(10)}.png").unlink()
    with pytest.raises(FileNotFoundError, match=f"{stem(10)}.png: missing prediction frame"):
        evaluate_folder(tmp_path / "seg", gt_root)

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no pred.json and no label PNGs"):
        evaluate_folder(tmp_path / "empty", gt_root)
    with pytest.raises(FileNotFoundError, match="nowhere: Cityscapes-VPS root not found"):
        evaluate_folder(tmp_path / "empty", tmp_path / "nowhere")
