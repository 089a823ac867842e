"""Outputs of vsda-infer: overlay, label PNGs, panoptic PNGs + pred.json, JSON lines, failed writes
(vsda_deploy/sinks.py)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy import sinks
from vsda_deploy.evaluation import read_label_png
from vsda_deploy.labels import VIPER15
from vsda_deploy.outputs import OutputError
from vsda_deploy.sinks import (
    JsonLinesWriter,
    LabelWriter,
    PanopticWriter,
    WindowSink,
    has_display,
    image_id,
    overlay,
    palette_lut,
)

H, W = 32, 48


def semantic_map() -> np.ndarray:
    """Return road (0) with a car (10) block, a person (9) block and a void (255) corner."""
    sem = np.zeros((H, W), np.uint8)
    sem[4:12, 4:20] = 10
    sem[16:28, 30:36] = 9
    sem[28:, :4] = 255
    return sem


def test_overlay_blends_class_colours_and_keeps_void() -> None:
    frame = np.full((H, W, 3), 100, np.uint8)
    out = overlay(frame, semantic_map(), palette_lut(VIPER15.palette), alpha=0.5)
    assert out[0, 0].tolist() == [114, 82, 114]  # road (128, 64, 128): (100 + c) / 2
    assert out[5, 5].tolist() == [50, 50, 121]  # car (0, 0, 142)
    assert out[30, 1].tolist() == [100, 100, 100]  # void: the frame itself
    assert palette_lut(VIPER15.palette)[255].tolist() == [0, 0, 0]


def test_label_pngs_are_named_after_frames_and_round_trip(tmp_path: Path) -> None:
    writer = LabelWriter(tmp_path / "labels")
    sem = semantic_map()
    a = writer.write("0001_0003_lindau_000100_000003_leftImg8bit", sem)
    b = writer.write("clip_000007", sem[::-1])
    assert a.name == "0001_0003_lindau_000100_000003_leftImg8bit.png" and b.name == "clip_000007.png"
    assert np.array_equal(read_label_png(a), sem) and np.array_equal(read_label_png(b), sem[::-1])
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == [a.name, b.name]  # no temp files left
    with pytest.raises(ValueError, match=r"clip_000007\.png: two frames of the source are named 'clip_000007'"):
        writer.write("clip_000007", sem)
    writer.abort()
    assert list((tmp_path / "labels").iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=rf"^--save-labels {tmp_path / 'file'}: needs a folder"):
        LabelWriter(tmp_path / "file")


def test_panoptic_writer_matches_the_official_format(tmp_path: Path) -> None:
    sem = semantic_map()
    inst = np.zeros((H, W), np.int32)
    inst[4:12, 4:12], inst[4:12, 12:20] = 3, 7  # two cars
    inst[16:28, 30:36] = 2  # one person
    writer = PanopticWriter(tmp_path)
    for t in (1, 2):
        writer.write(f"0001_000{t}_lindau_000100_00000{t}_leftImg8bit", sem, inst)
    writer.close()
    pred = json.loads((tmp_path / "pred.json").read_text())
    assert [a["image_id"] for a in pred["annotations"]] == ["0001_0001_lindau_000100_000001",
                                                            "0001_0002_lindau_000100_000002"]
    assert len(pred["categories"]) == 19 and pred["annotations"][0]["file_name"] == "0001_0001_lindau_000100_000001.png"
    info = pred["annotations"][1]["segments_info"]
    # road -> CS19 0, car -> 13, person -> 11: ids (trainId19 + 1) * 1000 + instance
    assert {(s["id"], s["category_id"], s["area"]) for s in info} == {
        (1000, 0, H * W - 128 - 72 - 16), (14003, 13, 64), (14007, 13, 64), (12002, 11, 72)}
    seg = vps.rgb_to_id(vps.read_rgb_png(tmp_path / "pan_pred" / "0001_0002_lindau_000100_000002.png"))
    back_sem, back_inst = vps.from_segments(seg, info)
    assert np.array_equal(back_sem, sem)
    assert set(np.unique(back_inst[sem == 10]).tolist()) == {14003, 14007}


def test_image_id_strips_the_suffix_of_cityscapes_names() -> None:
    assert image_id("0002_0010_marbach_000100_000010_leftImg8bit") == "0002_0010_marbach_000100_000010"
    assert image_id("camera0_000012") == "camera0_000012"


def test_json_lines_have_class_fractions(tmp_path: Path) -> None:
    path = tmp_path / "frames.jsonl"
    writer = JsonLinesWriter(path, VIPER15.classes)
    writer.write({"index": 0, "latency_ms": {"total": 1.5}}, semantic_map())
    writer.write({"index": 1}, np.full((H, W), 8, np.uint8))
    assert not path.exists()
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["index"] for line in lines] == [0, 1] and lines[0]["latency_ms"] == {"total": 1.5}
    assert lines[0]["classes"] == {"road": round((H * W - 128 - 72 - 16) / (H * W), 5),
                                   "person": round(72 / (H * W), 5), "car": round(128 / (H * W), 5)}
    assert lines[1]["classes"] == {"sky": 1.0}


class FullDisk:
    """A text file that accepts ``room`` bytes, then fails every write with ENOSPC, as on a full disk."""

    def __init__(self, path: Path, room: int) -> None:
        self.file, self.room = open(path, "w", encoding="utf-8"), room

    def write(self, text: str) -> int:
        if len(text) > self.room:
            self.file.write(text[: self.room])  # a partial line reaches the disk
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(text)
        return self.file.write(text)

    def flush(self) -> None:
        self.file.flush()

    def tell(self) -> int:
        return self.file.tell()

    def close(self) -> None:
        self.file.close()


def test_json_lines_on_a_full_disk_keep_the_complete_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disks: list[FullDisk] = []
    monkeypatch.setattr(sinks, "open", lambda path, *a, **k: disks.append(FullDisk(path, 10**6)) or disks[-1],
                        raising=False)  # the module's open() is the disk's
    path = tmp_path / "frames.jsonl"
    writer = JsonLinesWriter(path, VIPER15.classes)
    writer.write({"index": 0}, semantic_map())
    writer.write({"index": 1}, semantic_map())
    disks[0].room = 20  # the disk fills up in the middle of the third line
    with pytest.raises(OutputError, match=rf"^--save-jsonl {path}: writing line 3 failed \(No space left on device\)"):
        writer.write({"index": 2}, semantic_map())
    assert writer.salvage() == "kept the 2 complete lines written before"
    lines = path.read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1]  # the partial third line was cut off
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.jsonl"]  # no .partial left


def test_label_png_that_cannot_be_written_names_the_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = LabelWriter(tmp_path / "labels")
    writer.write("a", semantic_map())
    monkeypatch.setattr(cv2, "imwrite", lambda path, image: False)  # as OpenCV says on a full disk
    with pytest.raises(OutputError, match=rf"^--save-labels {tmp_path / 'labels' / 'b.png'}: cannot write the PNG"):
        writer.write("b", semantic_map())
    assert writer.salvage() == "kept the 1 PNGs written before"
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["a.png"]


def test_window_is_off_without_a_display(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert not has_display()
    window = WindowSink(VIPER15.palette)
    assert not window.enabled and "no display" in caplog.text
    window.write(np.zeros((H, W, 3), np.uint8), semantic_map())  # a no-op, not an error
    window.close()
    assert not window.stop_requested
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert has_display()
