"""The latency suite times its variants side by side."""

from __future__ import annotations

from benchmarks.suites.latency import interleaved


def test_interleaved_round_robin_blocks() -> None:
    calls: list[str] = []
    runners = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    times = interleaved(runners, runs=7, warmup=2, blocks=3, settle=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 7, "b": 7}
    assert calls[:4] == ["a", "a", "b", "b"]  # warm-ups first, untimed
    # then blocks of 1 settling + 3, 2, 2 timed calls: a aaa b bbb | a aa b bb | a aa b bb
    assert "".join(calls[4:]) == "aaaabbbbaaabbbaaabbb"


def test_conv_gflop_counts_multiply_adds_of_every_convolution() -> None:
    from torch import nn

    from benchmarks.suites.latency import conv_gflop

    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.Conv2d(8, 5, 1))
    # 8x16 input -> 4x8 maps: 32 * (8*3*9 + 8*2*9 + 5*8) multiply-adds, 2 FLOP each
    assert conv_gflop(model, (8, 16)) * 1e9 == 2 * 32 * (8 * 27 + 8 * 18 + 5 * 8)


def test_summary_ratios_and_fp32_ceiling() -> None:
    from benchmarks.suites.latency import VARIANTS, _summary

    times = dict(zip(VARIANTS, ([120.0], [100.0], [110.0], [150.0], [40.0]), strict=True))
    s = _summary(times, gflop=18.0, peak=200.0)
    assert s["speedup"]["ort_fp32_vs_pytorch"] == 1.2
    assert s["speedup"]["int8_cpu_vs_ort_fp32"] == 2.5
    assert s["gflops"]["ort-fp32"] == 180.0
    # convolutions alone at 200 GFLOP/s take 90 ms: PyTorch's 120 ms over that
    assert abs(s["ort_fp32_vs_pytorch_ceiling"] - 120 / 90) < 1e-12


def test_latency_suite_times_every_variant_of_each_width(tmp_path) -> None:
    from benchmarks.suite import SuiteOptions
    from benchmarks.suites.latency import VARIANTS, run

    opts = SuiteOptions(data=f"cityscapes-vps:{tmp_path / 'absent'}", sizes=((64, 128),), runs=5, warmup=1,
                        threads=1)
    res = run(opts, None, "ddrnet23_slim", (8,), calib_frames=2)
    (row,) = res.rows
    assert row.name == "ddrnet23_slim w8 · 64x128" and row.status == "ok"
    assert all(row.values[f"{v}_ms"] > 0 for v in VARIANTS)
    assert row.values["ort_fp32_vs_pytorch"] == row.values["pytorch_ms"] / row.values["ort-fp32_ms"]
    assert res.extra["frame"].endswith("synth/target")  # no data given: a generated benchmark
