"""Cityscapes-Seq: the real target, read in VIPER15, SYNTHIA12 or the 19 Cityscapes trainIds.

Frames ``ROOT/leftImg8bit_sequence/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png``
come in 30-frame snippets; the 20th frame of each has a label
``ROOT/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png`` (Cityscapes labelIds).
Its number is the snippet's own (``_000019`` only where a snippet starts at 0: 1,098 of the
2,975 train labelled frames end otherwise, e.g. ``bochum_000000_000313``). Several snippets
can share one ``{city}_{seq}`` (e.g. Frankfurt), so a *video* here is a run of consecutive
frame numbers, named ``{city}_{seq}_{first frame}``. This is the one reader of the layout:
training, ``vsda-train eval`` and ``vsda-infer cityscapes-seq:ROOT`` all use it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vsda_deploy.labels import CITYSCAPES_LUT, CITYSCAPES_NUM_LABELIDS
from vsda_deploy.data.base import (
    ClipDataset,
    DatasetError,
    FlowProvider,
    FrameRecord,
    read_id_png,
    remap,
    require_dir,
)

IMAGE_SUFFIX = "_leftImg8bit.png"
SNIPPET = 30  # frames per Cityscapes sequence snippet
LABEL_SUFFIX = "_gtFine_labelIds.png"
_NAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_")


def _parse(path: Path) -> tuple[str, int, int]:
    m = _NAME.match(path.name)
    if m is None:
        raise DatasetError(f"{path}: not a Cityscapes name ({{city}}_{{seq:06d}}_{{frame:06d}}_*)")
    return m["city"], int(m["seq"]), int(m["frame"])


def _runs(frames: dict[int, str]) -> list[list[int]]:
    """Return the runs of consecutive frame numbers, in order."""
    runs: list[list[int]] = []
    for i in sorted(frames):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


class CityscapesSeqDataset(ClipDataset):
    """Cityscapes-Seq clips; with ``labels`` the samples are the labelled (20th) frames."""

    dataset = "cityscapes-seq"
    label_spaces = ("viper15", "synthia12", "cityscapes19")

    def __init__(self, root: str | Path, split: str = "train", k: int = 1, labels: bool = True,
                 flow: FlowProvider | None = None, label_space: str | None = None,
                 pad_start: bool = False, frames: str = "all") -> None:
        super().__init__(root, split, k, labels, flow, label_space, pad_start, frames)
        self.lut = CITYSCAPES_LUT[self.label_space.name]
        require_dir(self.root, "Cityscapes root")
        seq_dir = require_dir(self.root / "leftImg8bit_sequence" / split, f"Cityscapes-Seq {split!r} frame folder")
        groups: dict[tuple[str, int], dict[int, str]] = {}
        for f in sorted(seq_dir.glob(f"*/*{IMAGE_SUFFIX}")):
            city, seq, frame = _parse(f)
            groups.setdefault((city, seq), {})[frame] = str(f)
        videos, video_of = {}, {}
        for (city, seq), frames in groups.items():
            for run in _runs(frames):
                name = f"{city}_{seq:06d}_{run[0]:06d}"
                videos[name] = {i: frames[i] for i in run}
                video_of.update({(city, seq, i): name for i in run})
        labelled = self._labelled(groups, video_of) if self.labelled_positions else None
        self._index(videos, labelled, lambda v, i, p: Path(p).name.replace(IMAGE_SUFFIX, ".png"))
        self._require_records(seq_dir)

    def _labelled(self, groups: dict, video_of: dict) -> dict[tuple[str, int], str]:
        """Return ``{(video, frame): label path}``; a labelled frame must have its t-k frame."""
        gt_dir = require_dir(self.root / "gtFine" / self.split,
                             f"Cityscapes {self.split!r} label folder (gtFine_trainvaltest.zip; labelled frames)")
        labelled = {}
        for f in sorted(gt_dir.glob(f"*/*{LABEL_SUFFIX}")):
            city, seq, frame = _parse(f)
            frames = groups.get((city, seq), {})
            if frame not in frames:
                raise DatasetError(f"{f}: label without its frame {city}_{seq:06d}_{frame:06d}{IMAGE_SUFFIX}")
            # The labelled frame is the 20th of its snippet: frames t-k..t-1 must exist where
            # the snippet has earlier frames (a gap would start a new run and silently drop it).
            missing = [j for j in range(frame - self.k, frame) if j not in frames]
            inside = any(j in frames for j in range(frame - SNIPPET + 1, frame - self.k))
            if missing and inside and not self.pad_start:
                name = f"{city}_{seq:06d}_{missing[0]:06d}{IMAGE_SUFFIX}"
                raise DatasetError(f"{Path(frames[frame]).parent / name}: missing; it lies between the labelled "
                                   f"frame {frame} and its t-{self.k} neighbour")
            labelled[(video_of[(city, seq, frame)], frame)] = str(f) if self.labels else None
        return labelled

    def load_label(self, rec: FrameRecord) -> tuple[np.ndarray, dict]:
        raw = read_id_png(rec.label_path)
        return remap(raw, self.lut, CITYSCAPES_NUM_LABELIDS, rec.label_path), {}
