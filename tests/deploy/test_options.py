"""Option values: the one HxW parser, its bounds, --input-size native (vsda_deploy/options.py)."""

from __future__ import annotations

import pytest
from vsda_export.onnx_export import parse_input_size as export_input_size

from vsda_deploy.options import MAX_SIDE, MIN_SIDE, OptionError, parse_hw, parse_input_size


def test_parse_hw_and_its_bounds() -> None:
    assert parse_hw("512x1024") == (512, 1024) and parse_hw(" 64 X 128 ") == (64, 128)
    assert parse_hw(f"{MIN_SIDE}x{MAX_SIDE}") == (MIN_SIDE, MAX_SIDE)
    for bad, message in (("512", "expected HxW"), ("a x b", "expected HxW"), ("0x10", "within 16..4096"),
                         ("1x1", "within 16..4096"), ("20000x20000", "within 16..4096"), ("15x64", "within")):
        with pytest.raises(OptionError, match=f"^--input-size .*{message}"):
            parse_hw(bad)
    with pytest.raises(OptionError, match="^--sizes '7': expected HxW"):
        parse_hw("7", "--sizes")


def test_input_size_default_native_or_hw() -> None:
    assert parse_input_size(None) is None
    assert parse_input_size("native") == parse_input_size(" NATIVE ") == "native"
    assert parse_input_size("128x256") == (128, 256)


def test_export_and_benchmarks_read_sizes_with_the_same_rules() -> None:
    from benchmarks.suite import parse_sizes

    assert export_input_size("128x256") == (128, 256) and parse_sizes("128x256, 96x160") == ((128, 256), (96, 160))
    for read in (export_input_size, lambda text: parse_sizes(text)[0]):
        with pytest.raises(ValueError, match="within 16..4096"):
            read("20000x20000")
