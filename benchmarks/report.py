"""Print one table from the ``eval.json`` of several runs (the end of ``make demo``).

    python -m benchmarks.report runs/demo/source runs/demo/vat runs/demo/vst [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

COLUMNS = (("mIoU", "miou"), ("VPQ", "vpq"), ("VPQ things", "vpq_things"), ("VPQ stuff", "vpq_stuff"),
           ("TC", "tc"))


def load_runs(folders: list[str]) -> dict[str, dict]:
    """Return ``{run folder: eval JSON}``; a folder without eval.json is one clear error."""
    out = {}
    for folder in folders:
        path = Path(folder) / "eval.json"
        if not path.is_file():
            raise SystemExit(f"error: {path}: not found (did the run finish?)")
        out[folder] = json.loads(path.read_text())
    return out


def table(runs: dict[str, dict], title: str = "target-val, %") -> Table:
    t = Table(title=title)
    t.add_column("run")
    for name, _ in COLUMNS:
        t.add_column(name, justify="right")
    for folder, res in runs.items():
        t.add_row(folder, *("-" if res.get(k) is None else f"{res[k]:.1f}" for _, k in COLUMNS))
    return t


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders holding eval.json")
    p.add_argument("--json", help="also write {run: {metric: value}} here")
    a = p.parse_args(argv)
    runs = load_runs(a.runs)
    Console().print(table(runs))
    if a.json:
        keep = {f: {k: r.get(k) for _, k in COLUMNS} for f, r in runs.items()}
        Path(a.json).write_text(json.dumps(keep, indent=1))


if __name__ == "__main__":
    main()
