"""The ``accuracy`` suite: source-only / VAT / VAT+VST / VAT+mean teacher / target oracle on target-val videos.

Checkpoints come from ``--checkpoints name=path,...``, else from ``runs/demo/<name>/last.pt`` (what
``make demo`` leaves), else (``--train``) they are trained with ``--config`` exactly as ``make demo``
does, each from the previous one. Every checkpoint is scored afresh with the deploy metrics
(mIoU, VPQ, TC), and the share of the source-only -> oracle gap each method closes is reported.
The last checkpoint of each run is used: no model selection on target labels.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.suite import Column, Row, SuiteOptions, SuiteResult, dataset_root, failed_row, new_result
from vsda_deploy.options import OptionError

METHODS = {"source": "source-only", "vat": "VAT", "vst": "VAT + VST", "mt": "VAT + mean teacher",
           "oracle": "target oracle"}
INIT = {"vat": "source", "vst": "vat", "mt": "vat"}  # what each phase starts from when trained here
PHASE = {"oracle": "source", "mt": "vst"}  # the phase of the runs not named after theirs
COLUMNS = [Column("miou", "mIoU"), Column("vpq", "VPQ"), Column("tc", "TC"),
           Column("gap_closed", "gap closed %", "{:.0f}")]
RUNS = Path("runs/demo")


def parse_checkpoints(text: str) -> dict[str, Path]:
    """Return ``{method: checkpoint}`` from ``source=a.pt,vat=b.pt``; OptionError naming a bad entry."""
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, path = part.partition("=")
        if not sep or name not in METHODS:
            raise OptionError(f"--checkpoints: {part!r} is not NAME=PATH with NAME one of {', '.join(METHODS)}")
        out[name] = Path(path)
    return out


def _train(name: str, config: str, ckpts: dict[str, Path], runs_dir: Path) -> Path:
    """Train the missing ``name`` run with ``config`` into ``runs_dir/<name>``; return its checkpoint."""
    from vsda_train.chain import train_phase
    from vsda_train.config import load_config, with_run

    cfg = with_run(load_config(config), name=name, out_dir=str(runs_dir))
    cfg = replace(cfg, source=replace(cfg.source, oracle=name == "oracle"))
    if name == "mt":
        cfg = replace(cfg, vst=replace(cfg.vst, teacher="ema"))
    init = str(ckpts[INIT[name]]) if name in INIT else None
    return train_phase(cfg, PHASE.get(name, name), init=init, resume=True).out / "last.pt"


def resolve(given: dict[str, Path], config: str, train_missing: bool, runs_dir: Path = RUNS
            ) -> dict[str, Path | str]:
    """Return each method's checkpoint, or the reason it has none (a string)."""
    out: dict[str, Path | str] = {}
    for name in METHODS:
        path = given.get(name, runs_dir / name / "last.pt")
        if path.is_file():
            out[name] = path
        elif name in given:
            out[name] = f"{path}: not found"
        elif not train_missing:
            out[name] = f"{path}: not found (pass --train to train it with {config})"
        elif isinstance(out.get(INIT.get(name, name)), str):
            out[name] = f"cannot train: {INIT[name]} has no checkpoint"
        else:
            out[name] = _train(name, config, out, runs_dir)  # type: ignore[arg-type]
    return out


def score(path: Path, data: str) -> dict[str, Any]:
    """Return the eval JSON of a checkpoint on the val split of ``data``."""
    from vsda_train.evaluate import evaluate_model, load_model

    model, ckpt = load_model(path)
    return evaluate_model(model, data, "val", ckpt.get("label_space", "viper15"))


def run(opts: SuiteOptions, checkpoints: str = "", config: str = "configs/synth_edge.yaml",
        train_missing: bool = True, runs_dir: Path = RUNS) -> SuiteResult:
    """Score source-only, VAT, VAT+VST, VAT+mean teacher and the oracle; return the table with the gap closed."""
    dataset_root(opts.data)
    try:
        given = parse_checkpoints(checkpoints)
    except OptionError as exc:
        raise SystemExit(f"error: {exc}") from None
    result = new_result("accuracy", COLUMNS, {**opts.settings(), "checkpoints": checkpoints, "config": config})
    result.extra["name_header"] = "method"
    for name, ckpt in resolve(given, config, train_missing, runs_dir).items():
        if isinstance(ckpt, str):
            result.rows.append(failed_row(METHODS[name], ckpt))
            continue
        try:
            ev = score(ckpt, opts.data)
        except Exception as exc:
            result.rows.append(failed_row(METHODS[name], f"{ckpt}: {exc}"))
            continue
        result.rows.append(Row(METHODS[name], values={"miou": ev["miou"], "vpq": ev["vpq"], "tc": ev["tc"],
                                                     "checkpoint": str(ckpt)}))
    add_gap_closed(result.rows)
    result.notes.append("last checkpoint of every run (no model selection on target labels); "
                        "gap closed = (mIoU - source-only) / (oracle - source-only)")
    return result


def add_gap_closed(rows: list[Row]) -> None:
    """Set each ✅ row's share (%) of the source-only -> oracle mIoU gap, when both ends ran."""
    by = {r.name: r.values.get("miou") for r in rows if r.status == "ok"}
    lo, hi = by.get(METHODS["source"]), by.get(METHODS["oracle"])
    if lo is None or hi is None or hi <= lo:
        return
    for r in rows:
        if r.status == "ok" and r.values.get("miou") is not None:
            r.values["gap_closed"] = 100 * (r.values["miou"] - lo) / (hi - lo)


def plot(result: SuiteResult, path: Path) -> Path | None:
    """Write grouped bars of mIoU / VPQ / TC per method; return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.status == "ok"]
    if not rows:
        return None
    keys = [("miou", "mIoU"), ("vpq", "VPQ"), ("tc", "TC")]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(keys)
    for k, (key, label) in enumerate(keys):
        xs = [i + (k - 1) * width for i in range(len(rows))]
        vals = [r.values.get(key) or 0.0 for r in rows]
        bars = ax.bar(xs, vals, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(rows)), [r.name for r in rows])
    ax.set_ylabel("% on target-val")
    ax.set_title(f"sim-to-real adaptation · {result.machine.get('host', '')}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
