"""Scoring prediction folders against Cityscapes-VPS ground truth (vsda_deploy/evaluation.py).

The fixture is one real Cityscapes-VPS video as the official ``prepare_data/`` scripts leave it
(mcahny/vps): the 20 frames ``frankfurt_000000_000275`` .. ``000294`` in ``img_all/`` under
plain names, the labelled frames 5, 10, 15, 20 in ``img/`` as
``0001_0001_frankfurt_000000_000279_newImg8bit.png`` .. ``0001_0004_frankfurt_000000_000294_leftImg8bit.png``
(the first is the first Cityscapes-VPS training image TarViS's data README lists; 294 is
Cityscapes' labelled frame, DA-VSN ``CityscapesSeq_list/val.txt``), labels in ``panoptic_inst/``
(16-bit, obj_id from 0) and ``panoptic_video/`` + ``panoptic_gt_val_city_vps.json`` named
``*_final_mask.png`` / ``*_gtFine_color.png``. A textured car drives right 1 px per frame past a
static person; a patch of car pixels without instance is void, as the official scripts leave it.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.deploy.data.fixtures import official_segments, write_png
from tests.deploy.official_vpq import official_vpq
from vsda_deploy.evaluation import evaluate_folder, evaluate_predictor, list_gt, parse_gt_spec
from vsda_deploy.labels import CITYSCAPES19, CS19_TO_SYNTHIA12

ROAD, BUILDING, PERSON, CAR, V = 0, 2, 9, 10, 255
H, W = 40, 64
FRAMES = 20
FIRST = 275  # Cityscapes frame number of the video's first frame
LABELLED = (4, 9, 14, 19)  # positions of frames 5, 10, 15, 20 (279, 284, 289, 294)


def plain(t: int) -> str:
    return f"frankfurt_000000_{FIRST + t:06d}"


def image_id(t: int) -> str:
    return f"0001_{LABELLED.index(t) + 1:04d}_{plain(t)}"


def image_name(t: int) -> str:
    return image_id(t) + ("_leftImg8bit.png" if t == 19 else "_newImg8bit.png")


def label_name(t: int) -> str:
    return image_id(t) + ("_gtFine_color.png" if t == 19 else "_final_mask.png")


def scene(t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(rgb, VIPER15 semantic, panoptic_inst value in 19 trainIds)`` of position ``t``."""
    sem = np.full((H, W), ROAD, np.uint8)
    pan = np.zeros((H, W), np.uint16)
    sem[:14], pan[:14] = BUILDING, 2
    sem[:2], pan[:2] = V, 255
    x = 6 + t
    sem[18:30, x:x + 14], pan[18:30, x:x + 14] = CAR, 13000  # car, obj_id 0
    sem[12:34, 48:54], pan[12:34, 48:54] = PERSON, 11000  # person, obj_id 0
    sem[33:37, 56:60], pan[33:37, 56:60] = V, 255  # car pixels without an instance
    rgb = (np.random.default_rng(0).random((H, W, 3)) * 100).astype(np.uint8)  # static textured background
    rgb[18:30, x:x + 14] = 140 + (np.random.default_rng(1).random((12, 14, 3)) * 110).astype(np.uint8)
    rgb[12:34, 48:54] = (200, 40, 60)
    return rgb, sem, pan


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_split(root: Path, split: str = "val", video_gt: bool = True, inst: bool = True) -> None:
    """Write the fixture split under ``root`` as the official scripts name and encode it."""
    images, annotations = [], []
    for t in range(FRAMES):
        rgb, _, pan = scene(t)
        write_rgb(root / split / "img_all" / f"{plain(t)}_leftImg8bit.png", rgb)
        if t not in LABELLED:
            continue
        write_rgb(root / split / "img" / image_name(t), rgb)
        if inst:
            write_png(root / split / "panoptic_inst" / label_name(t), pan)
        if video_gt:
            seg, info = official_segments(pan)
            write_png(root / split / "panoptic_video" / label_name(t), _to_rgb(seg))
            images.append({"id": image_id(t), "file_name": image_name(t), "height": H, "width": W})
            annotations.append({"image_id": image_id(t), "file_name": label_name(t), "segments_info": info})
    if video_gt:
        (root / f"panoptic_gt_{split}_city_vps.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": []}))


def _to_rgb(ids: np.ndarray) -> np.ndarray:
    ids = ids.astype(np.uint32)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def write_label_preds(out: Path, frames=tuple(range(FRAMES)), edit=None, named=plain) -> None:
    """Write one train-id PNG per frame (the GT semantic, optionally edited), named like vsda-infer does."""
    out.mkdir(parents=True, exist_ok=True)
    for t in frames:
        sem = scene(t)[1]
        if edit is not None:
            sem = edit(t, sem)
        cv2.imwrite(str(out / f"{named(t)}_leftImg8bit.png"), sem)


def write_official_preds(out: Path, segments_of) -> None:
    """Write ``pan_pred/{image_id}.png`` + ``pred.json``; ``segments_of(t)`` returns ``(ids, {id: category})``."""
    annotations = []
    for t in LABELLED:
        ids, cats = segments_of(t)
        write_png(out / "pan_pred" / f"{image_id(t)}.png", _to_rgb(ids))
        info = [{"id": i, "category_id": c, "iscrowd": 0, "area": int((ids == i).sum())} for i, c in cats.items()]
        annotations.append({"image_id": image_id(t), "file_name": f"{image_id(t)}.png", "segments_info": info})
    (out / "pred.json").write_text(json.dumps({"annotations": annotations}))


def exact_segments(t: int) -> tuple[np.ndarray, dict[int, int]]:
    """Return the GT as an official prediction with other segment ids than the GT's."""
    pan = scene(t)[2].astype(np.int64)
    ids = np.where(pan == 255, 0, pan + 50)
    cats = {int(v): int((v - 50) // 1000 if v - 50 >= 1000 else v - 50) for v in np.unique(ids) if v}
    return ids, cats


@pytest.fixture(scope="module")
def gt_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vps")
    write_split(root)
    return root


def test_gt_listing_json_and_panoptic_inst_agree(gt_root: Path, tmp_path: Path) -> None:
    videos = list_gt(gt_root, "val")
    assert list(videos) == ["0001"] and [f.name.index for f in videos["0001"]] == [279, 284, 289, 294]
    assert [f.path.parent.name for f in videos["0001"]] == ["panoptic_video"] * 4
    assert videos["0001"][3].path.name == "0001_0004_frankfurt_000000_000294_gtFine_color.png"
    write_split(tmp_path, video_gt=False)
    fallback = list_gt(tmp_path, "val")["0001"]
    for a, b in zip(videos["0001"], fallback):
        (sa, ia), (sb, ib) = a.read(), b.read()
        assert b.path.parent.name == "panoptic_inst" and (sa == sb).all()
        assert ((ia > 0) == (ib > 0)).all() and (ia[20, 50] > 0) and ib[20, 50] == 11000  # obj_id 0 is an object


def test_perfect_label_pngs_on_every_frame(gt_root: Path, tmp_path: Path) -> None:
    write_label_preds(tmp_path / "pred")
    res = evaluate_folder(tmp_path / "pred", gt_root, "val")
    out = res.to_json()
    assert out["miou"] == pytest.approx(100) and out["vpq"] == pytest.approx(100)
    assert out["vpq_k"] == pytest.approx({"0": 100, "5": 100, "10": 100, "15": 100})
    assert out["vpq_things"] == pytest.approx(100) and out["vpq_stuff"] == pytest.approx(100)
    assert out["iou"]["car"] == pytest.approx(100) and out["iou"]["bus"] is None
    assert res.frames == 4 and res.videos == 1 and res.pred_format == "labels"
    # 19 consecutive pairs; DIS flow follows the textured car up to a few boundary pixels
    assert out["tc_pairs"] == 19 and 95 < out["tc"] <= 100


def test_label_pngs_named_by_image_id_on_labelled_frames_only(gt_root: Path, tmp_path: Path) -> None:
    write_label_preds(tmp_path / "pred", LABELLED, named=image_id)
    res = evaluate_folder(tmp_path / "pred", gt_root, "val")
    assert res.to_json()["vpq"] == pytest.approx(100)  # ids linked over 5-frame gaps
    assert res.to_json()["tc"] is None and any("TC not measured" in n for n in res.notes)


def test_wrong_labels_lower_miou_by_hand(gt_root: Path, tmp_path: Path) -> None:
    def person_as_car(t: int, sem: np.ndarray) -> np.ndarray:
        return np.where(sem == PERSON, CAR, sem).astype(np.uint8)

    write_label_preds(tmp_path / "pred", edit=person_as_car)
    res = evaluate_folder(tmp_path / "pred", gt_root, "val")
    # per labelled frame: car 168 px, person 132 px predicted car
    assert res.iou["person"] == pytest.approx(0)
    assert res.iou["car"] == pytest.approx(100 * 168 / 300)
    assert res.miou == pytest.approx((100 + 100 + 0 + 100 * 168 / 300) / 4)
    # person: an FN every window; car: a TP and the person as an FP car -> 1 / (1 + 1/2)
    for k in (0, 5, 10, 15):
        assert res.vpq.per_class(k)[[PERSON, CAR]] == pytest.approx([0, 200 / 3])
    assert res.vpq.vpq("things") == pytest.approx(100 / 3)


def test_official_format_and_id_switch(gt_root: Path, tmp_path: Path) -> None:
    write_official_preds(tmp_path / "ok", exact_segments)
    res = evaluate_folder(tmp_path / "ok", gt_root, "val").to_json()
    assert res["vpq"] == pytest.approx(100) and res["miou"] == pytest.approx(100) and res["tc"] is None

    def switch(t: int) -> tuple[np.ndarray, dict[int, int]]:  # the car changes id in frames 10 and 20
        ids, cats = exact_segments(t)
        if t in (9, 19):
            ids = np.where(ids == 13050, 13051, ids)
            cats[13051] = cats.pop(13050)
        return ids, cats

    write_official_preds(tmp_path / "switch", switch)
    res = evaluate_folder(tmp_path / "switch", gt_root, "val").to_json()
    assert res["vpq_k"]["0"] == pytest.approx(100) and res["vpq_k"]["5"] < 100
    assert res["miou"] == pytest.approx(100)


def _official_files(gt_root: Path, pred_dir: Path) -> list:
    """Read GT and prediction files as the official scorer does: ids from RGB, classes from the JSONs."""
    def read(path: Path, info: list[dict]) -> tuple:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.int64)
        return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2], {
            s["id"]: (s["category_id"], s.get("iscrowd", 0)) for s in info}

    gt_json = json.loads((gt_root / "panoptic_gt_val_city_vps.json").read_text())
    pred_json = {a["image_id"]: a for a in json.loads((pred_dir / "pred.json").read_text())["annotations"]}
    files = sorted(gt_json["annotations"], key=lambda a: a["file_name"])
    gt = [read(gt_root / "val" / "panoptic_video" / a["file_name"], a["segments_info"]) for a in files]
    pred = [read(pred_dir / "pan_pred" / f"{a['image_id']}.png", pred_json[a["image_id"]]["segments_info"])
            for a in files]
    return [(gt, pred)]


def test_perturbed_official_predictions_score_as_the_official_rules(gt_root: Path, tmp_path: Path) -> None:
    def perturbed(t: int) -> tuple[np.ndarray, dict[int, int]]:
        ids, cats = exact_segments(t)
        cols = np.arange(W)[None, :]
        road = ids == 50  # road as two segments: left and right of a column that moves
        ids = np.where(road & (cols >= 20 + 3 * t), 77, ids)
        cats[77] = 0
        if t in (9, 19):  # the car's segment is a person in two frames
            cats[13050] = 11
        ids[36:40, 0:12] = 88  # a sidewalk blob on the road
        cats[88] = 1
        return ids, cats

    write_official_preds(tmp_path / "pred", perturbed)
    ref = official_vpq(_official_files(gt_root, tmp_path / "pred"),
                       {c: CITYSCAPES19.is_thing(c) for c in range(CITYSCAPES19.num_classes)})
    res = evaluate_folder(tmp_path / "pred", gt_root, "val", label_space="cityscapes19")
    for k, values in ref["k"].items():
        assert [res.vpq.vpq_k(s)[k] for s in ("all", "things", "stuff")] == pytest.approx(values)
    assert res.vpq.vpq() == pytest.approx(ref["vpq"][0]) and res.vpq.vpq() < 90
    # k=0 by hand: car 2 TP + 2 FN (a person in frames 10, 20) -> 2 / 3; person 4 TP + 2 FP (the car) -> 4 / 5
    assert res.vpq.per_class(0)[[13, 11]] == pytest.approx([200 / 3, 80])
    viper15 = evaluate_folder(tmp_path / "pred", gt_root, "val")  # no class outside VIPER15 here: same scores
    assert viper15.vpq.vpq() == pytest.approx(res.vpq.vpq())


def test_predictor_scores_like_the_folder(gt_root: Path) -> None:
    truth = {scene(t)[0].tobytes(): scene(t)[1] for t in range(FRAMES)}
    res = evaluate_predictor(lambda rgb: truth[rgb.tobytes()], gt_root, "val")
    assert res.miou == pytest.approx(100) and res.vpq.vpq() == pytest.approx(100) and res.tc_pairs == 19
    assert res.pred_format == "predictor (img_all)"
    few = evaluate_predictor(lambda rgb: truth[rgb.tobytes()], gt_root, "val", every_frame=False)
    assert few.pred_format == "predictor (img)" and few.frames == 4 and few.tc_pairs == 0


def test_a_synthia12_model_is_scored_in_its_own_space(gt_root: Path) -> None:
    to_synthia = np.full(256, 255, np.uint8)
    for viper, synthia in ((ROAD, 0), (BUILDING, 2), (PERSON, 9), (CAR, 11)):
        to_synthia[viper] = synthia
    assert CS19_TO_SYNTHIA12[13] == 11 and CS19_TO_SYNTHIA12[11] == 9
    truth = {scene(t)[0].tobytes(): to_synthia[scene(t)[1]] for t in range(FRAMES)}
    res = evaluate_predictor(lambda rgb: truth[rgb.tobytes()], gt_root, "val", label_space="synthia12")
    out = res.to_json()
    assert out["label_space"] == "synthia12" and "rider" in out["iou"] and out["iou"]["car"] == pytest.approx(100)
    assert out["miou"] == pytest.approx(100) and out["vpq"] == pytest.approx(100)
    with pytest.raises(ValueError, match="unknown class id"):  # a VIPER15 id 14 is no SYNTHIA12 class
        evaluate_predictor(lambda rgb: np.full(rgb.shape[:2], 14, np.uint8), gt_root, "val", label_space="synthia12")


def test_errors_name_the_file_or_frame(gt_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^kitti:/x: unknown ground-truth spec"):
        parse_gt_spec("kitti:/x")
    assert parse_gt_spec("cityscapes-vps:/data/vps") == Path("/data/vps")

    write_label_preds(tmp_path / "missing", LABELLED[:3])
    with pytest.raises(FileNotFoundError, match=f"missing: no prediction .* {image_id(19)}"):
        evaluate_folder(tmp_path / "missing", gt_root)

    write_label_preds(tmp_path / "size", LABELLED)
    cv2.imwrite(str(tmp_path / "size" / f"{plain(14)}_leftImg8bit.png"), np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match=f"{plain(14)}.*20x20"):
        evaluate_folder(tmp_path / "size", gt_root)

    write_label_preds(tmp_path / "ids", LABELLED, edit=lambda t, s: np.where(s == CAR, 40, s).astype(np.uint8))
    with pytest.raises(ValueError, match=f"{plain(4)}.*unknown class id.*40"):
        evaluate_folder(tmp_path / "ids", gt_root)

    write_official_preds(tmp_path / "seg", exact_segments)
    png = tmp_path / "seg" / "pan_pred" / f"{image_id(9)}.png"
    ids = np.where(exact_segments(9)[0] == 50, 999, exact_segments(9)[0])
    write_png(png, _to_rgb(ids))
    with pytest.raises(ValueError, match=r"pan_pred/.*: segment id\(s\) \[999\]"):
        evaluate_folder(tmp_path / "seg", gt_root)

    (tmp_path / "seg" / "pan_pred" / f"{image_id(14)}.png").unlink()
    with pytest.raises(FileNotFoundError, match=f"{image_id(14)}.png: missing prediction frame"):
        evaluate_folder(tmp_path / "seg", gt_root)

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no pred.json and no label PNGs"):
        evaluate_folder(tmp_path / "empty", gt_root)
    with pytest.raises(FileNotFoundError, match="nowhere: Cityscapes-VPS root not found"):
        evaluate_folder(tmp_path / "empty", tmp_path / "nowhere")
