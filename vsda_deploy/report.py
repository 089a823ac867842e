"""The Rich rendering of a ``vsda-infer`` run: latency per stage, frame counts, scores."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from vsda_deploy.evaluation import render_result
from vsda_deploy.infer import InferResult


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_report(result: InferResult) -> Group:
    """Return a Rich renderable: latency per stage, frame counts, then the scores (with ground truth)."""
    r = result.report
    frames = r["frames"]
    table = Table(title="latency per frame", caption=f"{r['backend']} · {r['provider']} · {r['precision']} · "
                                                     f"{r['device']} · input {r['input_size']}")
    table.add_column("stage")
    for q in ("p50", "p95", "p99"):
        table.add_column(f"{q} ms", justify="right")
    for stage, values in r["latency_ms"].items():
        table.add_row(stage, *(_ms(values[q]) for q in ("p50", "p95", "p99")), style="bold" if stage == "total" else "")
    parts: list[Any] = [table, f"{frames['processed']} frames processed at {r['fps']:.1f} FPS",
                        f"read {frames['read']} · dropped {frames['dropped']} · corrupt {frames['corrupt']} · "
                        f"reconnects {r['reconnects']}"]
    if result.stopped_by:
        parts.append(f"stopped by {result.stopped_by}")
    for option, entry in r.get("outputs", {}).items():
        if not entry["complete"]:
            parts.append(f"{option} {entry['path']}: incomplete ({entry.get('kept') or 'see the error'})")
    if result.scores is not None:
        parts.append(render_result(result.scores))
    return Group(*parts)
