"""Results tables in the docs, written from ``benchmarks/results`` JSON, never by hand.

A Markdown file marks a table with ``<!-- results: NAME -->`` ... ``<!-- /results -->``; NAME is
``adaptation`` (``python -m benchmarks.adaptation``) or a suite; the table comes from the newest
``benchmarks/results/NAME-<host>-<date>.json``. ``python -m benchmarks tables`` rewrites every marked table
in README.md and docs/*.md; ``--check`` only says which are out of date (exit 1).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmarks.adaptation import markdown as adaptation_markdown
from benchmarks.suite import load_result, markdown_table

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MARKED = re.compile(r"(<!-- results: (?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def table(name: str, results: Path = RESULTS) -> str:
    """Return the Markdown table of result ``name``, with a line naming its file."""
    files = sorted(results.glob(f"{name}-*.json"), key=lambda p: p.name[-15:])
    if not files:
        raise FileNotFoundError(f"{results}: no {name}-*.json result")
    path = files[-1]
    if name == "adaptation":
        body = adaptation_markdown(json.loads(path.read_text()))
    else:
        result = load_result(path)
        body = markdown_table(result) + f"\n\nMachine: {result.machine.get('summary', '?')}."
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    return f"{body}\n\n(`{shown}`)\n"


def render(text: str, results: Path = RESULTS) -> str:
    """Return ``text`` with every marked table rewritten."""
    return MARKED.sub(lambda m: m.group(1) + table(m["name"], results) + m.group(4), text)


def documents(repo: Path = REPO) -> list[Path]:
    """Return the Markdown files that may hold marked tables."""
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def update(check: bool = False) -> list[Path]:
    """Rewrite (or, with ``check``, only compare) every document; return those out of date."""
    stale = []
    for doc in documents():
        text = doc.read_text()
        new = render(text)
        if new != text:
            stale.append(doc)
            if not check:
                doc.write_text(new)
    return stale
