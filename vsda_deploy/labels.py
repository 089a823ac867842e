"""Label spaces, palettes and id maps of vsda (numpy only).

The training space is the 15-class VIPER<->Cityscapes space (docs/method.md). Files in
the official Cityscapes-VPS format carry the 19 Cityscapes trainIds; the maps here
convert between the two. Every map is a lookup table (LUT): ``lut[raw_id] -> train id``
with 255 for ignored ids, so remapping a label image is one ``lut[label]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255


@dataclass(frozen=True)
class LabelSpace:
    """An ordered set of classes: names, RGB colours and which are things."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    things: frozenset[int]
    evaluated: tuple[int, ...] | None = None  # None: every class is evaluated

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def eval_classes(self) -> tuple[int, ...]:
        return self.evaluated if self.evaluated is not None else tuple(range(self.num_classes))

    def is_thing(self, train_id: int) -> bool:
        return train_id in self.things

    def palette_array(self) -> np.ndarray:
        """Return a (256, 3) uint8 RGB table; ignored ids are black."""
        table = np.zeros((256, 3), np.uint8)
        table[: self.num_classes] = np.asarray(self.palette, np.uint8)
        return table

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """Return the RGB (H, W, 3) uint8 picture of a train-id label map."""
        return self.palette_array()[label.astype(np.uint8)]


_CS19 = (
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
)
_CS19_COLOUR = dict(_CS19)


def _space(name: str, classes: tuple[str, ...], things: tuple[str, ...], **kw) -> LabelSpace:
    return LabelSpace(
        name=name,
        classes=classes,
        palette=tuple(_CS19_COLOUR[c] for c in classes),
        things=frozenset(classes.index(t) for t in things),
        **kw,
    )


CITYSCAPES19 = _space(
    "cityscapes19",
    tuple(n for n, _ in _CS19),
    ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"),
)

VIPER15 = _space(
    "viper15",
    (
        "road", "sidewalk", "building", "fence", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "car", "truck", "bus", "motorcycle",
        "bicycle",
    ),
    ("person", "car", "truck", "bus", "motorcycle", "bicycle"),
)

# SYNTHIA-Seq -> Cityscapes: 12 classes trained, 11 evaluated (fence dropped).
SYNTHIA12 = _space(
    "synthia12",
    (
        "road", "sidewalk", "building", "fence", "pole", "traffic light", "traffic sign",
        "vegetation", "sky", "person", "rider", "car",
    ),
    ("person", "rider", "car"),
    evaluated=(0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11),
)

LABEL_SPACES: dict[str, LabelSpace] = {s.name: s for s in (VIPER15, SYNTHIA12, CITYSCAPES19)}


def make_lut(mapping: Mapping[int, int], size: int = 256) -> np.ndarray:
    """Return a uint8 LUT of ``size`` entries: ``mapping`` where given, 255 elsewhere."""
    lut = np.full(size, IGNORE_INDEX, np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut


# VIPER class ids (0..31) -> VIPER15 train ids.
VIPER_ID_TO_TRAIN = {
    3: 0, 4: 1, 9: 2, 11: 3, 13: 4, 14: 5, 7: 6, 8: 6, 6: 7, 2: 8,
    20: 9, 24: 10, 27: 11, 26: 12, 23: 13, 22: 14,
}
VIPER_NUM_IDS = 32
VIPER_CAR_ID = 24

# Cityscapes labelIds (0..33) -> VIPER15 train ids (rider counts as person).
CITYSCAPES_LABELID_TO_VIPER15 = {
    7: 0, 8: 1, 11: 2, 13: 3, 19: 4, 20: 5, 21: 6, 22: 7, 23: 8,
    24: 9, 25: 9, 26: 10, 27: 11, 28: 12, 32: 13, 33: 14,
}
CITYSCAPES_LABELID_TO_SYNTHIA12 = {
    7: 0, 8: 1, 11: 2, 13: 3, 17: 4, 19: 5, 20: 6, 21: 7, 23: 8, 24: 9, 25: 10, 26: 11,
}
CITYSCAPES_NUM_LABELIDS = 34
# Cityscapes labelIds -> the 19 trainIds (cityscapesscripts ``labels.py``: trainId column).
CITYSCAPES_LABELID_TO_CS19 = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

# Cityscapes 19 trainIds <-> VIPER15 (wall, pole, train -> void).
CS19_TO_VIPER15 = {
    0: 0, 1: 1, 2: 2, 4: 3, 6: 4, 7: 5, 8: 6, 9: 7, 10: 8,
    11: 9, 12: 9, 13: 10, 14: 11, 15: 12, 17: 13, 18: 14,
}
CS19_TO_SYNTHIA12 = {0: 0, 1: 1, 2: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7, 10: 8, 11: 9, 12: 10, 13: 11}
# The inverse is unique except person (11 and 12 -> 9): it maps back to person.
VIPER15_TO_CS19 = {
    v: k for k, v in sorted(CS19_TO_VIPER15.items(), reverse=True)
}

VIPER_LUT = make_lut(VIPER_ID_TO_TRAIN)
CITYSCAPES_LUT = {
    VIPER15.name: make_lut(CITYSCAPES_LABELID_TO_VIPER15),
    SYNTHIA12.name: make_lut(CITYSCAPES_LABELID_TO_SYNTHIA12),
    CITYSCAPES19.name: make_lut(CITYSCAPES_LABELID_TO_CS19),
}
CS19_TO_VIPER15_LUT = make_lut(CS19_TO_VIPER15)
VIPER15_TO_CS19_LUT = make_lut(VIPER15_TO_CS19)
# Files in the official Cityscapes-VPS format carry 19 trainIds: per label space, the map
# from them (classes outside the space -> 255) and back.
FROM_CS19_LUT = {
    VIPER15.name: CS19_TO_VIPER15_LUT,
    SYNTHIA12.name: make_lut(CS19_TO_SYNTHIA12),
    CITYSCAPES19.name: make_lut({i: i for i in range(CITYSCAPES19.num_classes)}),
}
TO_CS19_LUT = {
    VIPER15.name: VIPER15_TO_CS19_LUT,
    SYNTHIA12.name: make_lut({v: k for k, v in CS19_TO_SYNTHIA12.items()}),
    CITYSCAPES19.name: FROM_CS19_LUT[CITYSCAPES19.name],
}


def unknown_ids(label: np.ndarray, valid: int | np.ndarray) -> list[int]:
    """Return the sorted ids in ``label`` that are neither valid nor 255.

    ``valid`` is either a count (ids ``0..valid-1`` are valid) or an array of ids.
    """
    present = np.unique(label)
    allowed = np.arange(valid) if np.isscalar(valid) else np.asarray(valid)
    bad = np.setdiff1d(present, np.append(allowed, IGNORE_INDEX))
    return [int(b) for b in bad]


def get_label_space(name: str) -> LabelSpace:
    """Return the label space named ``name`` (viper15, synthia12, cityscapes19)."""
    try:
        return LABEL_SPACES[name]
    except KeyError:
        raise ValueError(f"unknown label space {name!r}; choose from {sorted(LABEL_SPACES)}") from None


# SYNTHIA-Seq class ids (SYNTHIA-SEQS README: 0 void, 1 sky, 2 building, 3 road, 4 sidewalk,
# 5 fence, 6 vegetation, 7 pole, 8 car, 9 traffic sign, 10 pedestrian, 11 bicycle,
# 12 lane marking, 13-14 reserved, 15 traffic light) -> SYNTHIA12 train ids, as DA-VSN and
# TPS map them: bicycle (the SYNTHIA cyclist) counts as rider, lane marking is void.
SYNTHIA_SEQ_ID_TO_TRAIN = {
    3: 0, 4: 1, 2: 2, 5: 3, 7: 4, 15: 5, 9: 6, 6: 7, 1: 8, 10: 9, 11: 10, 8: 11,
}
SYNTHIA_SEQ_NUM_IDS = 16
SYNTHIA_SEQ_LUT = make_lut(SYNTHIA_SEQ_ID_TO_TRAIN)
