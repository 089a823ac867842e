"""The overlay legend: which classes, their colours and names, how it fits the frame (vsda_deploy/legend.py)."""

from __future__ import annotations

import numpy as np

from vsda_deploy.labels import VIPER15
from vsda_deploy.legend import draw_legend, present_classes
from vsda_deploy.sinks import palette_lut


def test_present_classes_in_class_order_without_speckle() -> None:
    sem = np.zeros((100, 100), np.uint8)
    sem[:50] = 10
    sem[0, 0] = 3  # one pixel in 10 000: speckle
    sem[99, :20] = 255  # void is never a class
    assert present_classes(sem, 15) == [0, 10]
    assert present_classes(sem, 15, min_fraction=0.0) == [0, 3, 10]


def test_legend_has_a_swatch_of_each_class_colour_and_leaves_the_rest() -> None:
    lut = palette_lut(VIPER15.palette)
    sem = np.zeros((360, 640), np.uint8)
    sem[:, 320:] = VIPER15.classes.index("car")
    picture = np.full((360, 640, 3), 128, np.uint8)
    out = draw_legend(picture.copy(), sem, VIPER15.classes, lut)
    box = out[:80, :200]
    for c in (0, VIPER15.classes.index("car")):
        assert (box == lut[c]).all(-1).sum() > 30, VIPER15.classes[c]  # a filled swatch of the class colour
    assert (box == 255).all(-1).sum() > 30  # white names and swatch borders
    assert (out[200:, 300:] == 128).all()  # nothing drawn outside the legend


def test_many_classes_on_a_small_frame_wrap_into_columns() -> None:
    lut = palette_lut(VIPER15.palette)
    sem = np.repeat(np.arange(15, dtype=np.uint8), 20)[None].repeat(64, 0)  # 15 classes on a 64x300 frame
    out = draw_legend(np.full((64, 300, 3), 128, np.uint8), sem, VIPER15.classes, lut)

    def swatch(c: int) -> tuple[int, int]:
        ys, xs = np.nonzero((out == lut[c]).all(-1))
        return int(ys.min()), int(xs.min())

    (y0, x0), (y3, _), (y4, x4) = swatch(0), swatch(3), swatch(4)
    assert y0 < y3 < 64 and y4 == y0 and x4 > x0  # 4 rows fit 64 px: the 5th class starts a second column
