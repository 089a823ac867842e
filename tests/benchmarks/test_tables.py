"""The results tables of README.md and docs/ are the committed JSON's, not hand-copied (benchmarks/tables.py)."""

from benchmarks.tables import documents, render, update


def test_marked_tables_are_rewritten_from_the_json(tmp_path) -> None:
    (tmp_path / "rehearsal-vm-2026-01-01.json").write_text(
        '{"schema": "vsda-benchmark/1", "suite": "rehearsal", "created": "2026-01-01", "machine": {"summary": "M"},'
        ' "settings": {}, "columns": [{"key": "wall_s", "header": "wall s", "fmt": "{:.0f}"}],'
        ' "rows": [{"name": "flow", "status": "ok", "reason": "", "values": {"wall_s": 6.4}}],'
        ' "notes": [], "extra": {}}')
    text = "intro\n<!-- results: rehearsal -->\nstale\n<!-- /results -->\nend\n"
    out = render(text, tmp_path)
    assert "| flow | ✅ | 6 |" in out and "stale" not in out and out.startswith("intro\n") and out.endswith("end\n")
    assert render(out, tmp_path) == out


def test_the_committed_documents_are_up_to_date() -> None:
    assert any("<!-- results:" in d.read_text() for d in documents())
    assert update(check=True) == [], "run: python -m benchmarks tables"


def test_the_adaptation_table_comes_from_the_newest_run(tmp_path) -> None:
    import json
    from pathlib import Path

    committed = sorted(Path("benchmarks/results").glob("adaptation-*.json"))[-1]
    summary = json.loads(committed.read_text())
    (tmp_path / "adaptation-vm-2026-01-01.json").write_text(json.dumps(summary))
    summary["rows"]["source_only"]["miou"] = [99.25, 99.25, 99.25]
    (tmp_path / "adaptation-vm-2026-02-01.json").write_text(json.dumps(summary))
    out = render("<!-- results: adaptation -->\n<!-- /results -->\n", tmp_path)
    assert "| source-only | 99.2 ± 0.0 |" in out and "adaptation-vm-2026-02-01.json" in out
