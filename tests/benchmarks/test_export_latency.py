"""The export latency benchmark times its variants side by side."""

from __future__ import annotations

from benchmarks.export_latency import interleaved


def test_interleaved_round_robin_blocks() -> None:
    calls: list[str] = []
    runners = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    times = interleaved(runners, runs=7, warmup=2, blocks=3, settle=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 7, "b": 7}
    assert calls[:4] == ["a", "a", "b", "b"]  # warm-ups first, untimed
    # then blocks of 1 settling + 3, 2, 2 timed calls: a aaa b bbb | a aa b bb | a aa b bb
    assert "".join(calls[4:]) == "aaaabbbbaaabbbaaabbb"
