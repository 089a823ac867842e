"""What every benchmark suite shares: rows with a status, machine facts, timing, and the JSON /
Markdown / PNG files of a run, plus ``compare`` between two runs.

A suite builds a :class:`SuiteResult` (columns + rows) and hands it to :func:`write_result`,
which writes ``<out>/<suite>-<host>-<date>.{json,md,png}``. Nothing here imports torch,
ONNX Runtime or TensorRT at module import; :func:`machine_facts` looks for each one and
records what it finds.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from vsda_deploy.options import OptionError, parse_hw

SCHEMA = "vsda-benchmark/1"
OK, INACCURATE, FAILED = "ok", "inaccurate", "failed"
STATUS_MARK = {OK: "✅", INACCURATE: "❎", FAILED: "❌"}


# --- rows and results ----------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """One table column: the key into ``Row.values``, its header and number format."""

    key: str
    header: str
    fmt: str = "{:.1f}"


@dataclass
class Row:
    """One benchmark row: a name, a status (ok | inaccurate | failed) with its reason, and values."""

    name: str
    status: str = OK
    reason: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUS_MARK:
            raise ValueError(f"row {self.name!r}: status {self.status!r} is not one of {sorted(STATUS_MARK)}")


def failed_row(name: str, error: BaseException | str) -> Row:
    """Return a ❌ row whose reason is the error's first line (a missing package names its extra)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, ImportError) and getattr(error, "name", None):
        text = f"{error.name} is not installed ({text})" if error.name not in text else text
    return Row(name, FAILED, text[:200])


def classify(failures: Sequence[str]) -> tuple[str, str]:
    """Return ``(status, reason)`` of a row that ran: ✅ without accuracy failures, else ❎ with them."""
    return (INACCURATE, "; ".join(failures)) if failures else (OK, "")


@dataclass
class SuiteResult:
    """A suite's run: what was measured (columns, rows), on what (machine), with which settings."""

    suite: str
    columns: list[Column]
    rows: list[Row]
    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return _finite({
            "schema": SCHEMA, "suite": self.suite, "created": self.created, "machine": self.machine,
            "settings": self.settings, "columns": [asdict(c) for c in self.columns],
            "rows": [asdict(r) for r in self.rows], "notes": self.notes, "extra": self.extra,
        })

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SuiteResult:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a vsda benchmark result (schema {data.get('schema')!r}, expected {SCHEMA!r})")
        return cls(suite=data["suite"], columns=[Column(**c) for c in data["columns"]],
                   rows=[Row(**r) for r in data["rows"]], settings=data.get("settings", {}),
                   machine=data.get("machine", {}), created=data.get("created", ""),
                   notes=list(data.get("notes", [])), extra=data.get("extra", {}))


def load_result(path: str | Path) -> SuiteResult:
    """Return the result stored in a suite's JSON file; one clear error naming the file otherwise."""
    path = Path(path)
    try:
        return SuiteResult.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise SystemExit(f"error: {path}: not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SystemExit(f"error: {path}: {exc}") from None


def _finite(value: Any) -> Any:
    """Return ``value`` with NaN / inf replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- tables -----------------------------------------------------------------------------------

def format_value(value: Any, fmt: str) -> str:
    """Return a cell: numbers with ``fmt``, None/NaN as '-', anything else as text."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt.format(value)
    return str(value)


def table_cells(result: SuiteResult) -> tuple[list[str], list[list[str]]]:
    """Return ``(headers, rows of cells)``: name, status (mark + reason), then the columns."""
    headers = [result.extra.get("name_header", "Row"), "Status", *(c.header for c in result.columns)]
    body = []
    for row in result.rows:
        status = STATUS_MARK[row.status] + (f" {row.reason}" if row.reason else "")
        body.append([row.name, status, *(format_value(row.values.get(c.key), c.fmt) for c in result.columns)])
    return headers, body


def markdown_table(result: SuiteResult) -> str:
    """Return the result as a GitHub Markdown table (pipes in cells escaped)."""
    headers, body = table_cells(result)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, headers)) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    lines += ["| " + " | ".join(map(esc, cells)) + " |" for cells in body]
    return "\n".join(lines)


def rich_table(result: SuiteResult, title: str | None = None) -> Any:
    """Return the result as a Rich table (numbers right-aligned)."""
    from rich.table import Table
    from rich.text import Text

    headers, body = table_cells(result)
    table = Table(title=title or f"{result.suite} · {result.machine.get('summary', '')}".strip(" ·"))
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < 2 else "right", overflow="fold")
    for cells in body:
        table.add_row(*(Text(c) for c in cells))  # plain text: "vsda[gpu]" is not Rich markup
    return table


def markdown_report(result: SuiteResult) -> str:
    """Return the Markdown file of a run: title, machine, table, notes."""
    m = result.machine
    lines = [f"# `{result.suite}` · {m.get('host', '?')} · {result.created[:10]}", "",
             f"Machine: {m.get('summary', '?')}", "", markdown_table(result)]
    if result.notes:
        lines += ["", *(f"- {n}" for n in result.notes)]
    settings = ", ".join(f"`{k}={v}`" for k, v in result.settings.items())
    if settings:
        lines += ["", f"Settings: {settings}"]
    return "\n".join(lines) + "\n"


# --- files --------------------------------------------------------------------------------------

def result_stem(suite: str, host: str, created: str) -> str:
    """Return ``<suite>-<host>-<YYYY-MM-DD>`` with the host reduced to letters, digits, '.', '_'."""
    safe = re.sub(r"[^A-Za-z0-9._]+", "_", host).strip("_") or "host"
    return f"{suite}-{safe}-{created[:10]}"


def write_result(result: SuiteResult, out_dir: str | Path,
                 plot: Callable[[SuiteResult, Path], Path | None] | None = None) -> dict[str, Path]:
    """Write the run's JSON, Markdown and (with ``plot``) PNG into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"error: --out {out_dir}: cannot create the folder ({exc.strerror})") from None
    stem = result_stem(result.suite, result.machine.get("host", "host"), result.created)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md"}
    if plot is not None:
        png = plot(result, out_dir / f"{stem}.png")
        if png is not None:
            paths["png"] = png
    result.extra["files"] = {k: p.name for k, p in paths.items()}
    _atomic_write(paths["json"], json.dumps(result.to_json(), indent=1, ensure_ascii=False) + "\n")
    _atomic_write(paths["md"], markdown_report(result))
    return paths


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def new_result(suite: str, columns: list[Column], settings: dict[str, Any]) -> SuiteResult:
    """Return an empty result stamped with this machine's facts and the current time."""
    return SuiteResult(suite, columns, [], settings=settings, machine=machine_facts(),
                       created=dt.datetime.now().astimezone().isoformat(timespec="seconds"))


# --- timing ---------------------------------------------------------------------------------------

def time_calls(fn: Callable[[], Any], runs: int = 50, warmup: int = 10,
               sync: Callable[[], Any] | None = None) -> list[float]:
    """Return the wall times (ms) of ``runs`` calls of ``fn`` after ``warmup`` untimed calls.

    ``sync`` (e.g. ``torch.cuda.synchronize``) is called before the clock starts and before it
    stops, so asynchronous GPU work is inside the measured time.
    """
    for _ in range(warmup):
        fn()
    sync = sync or (lambda: None)
    times = []
    for _ in range(runs):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(1e3 * (time.perf_counter() - t0))
    return times


def latency_stats(times_ms: Sequence[float]) -> dict[str, float]:
    """Return n, p50, p95, p99, IQR (ms) and FPS (1000 / p50) of a list of per-frame times."""
    if not times_ms:
        raise ValueError("no timings")
    p25, p50, p75, p95, p99 = (float(v) for v in np.percentile(times_ms, [25, 50, 75, 95, 99]))
    return {"n": len(times_ms), "p50": p50, "p95": p95, "p99": p99, "iqr": p75 - p25,
            "mean": statistics.fmean(times_ms), "fps": 1e3 / p50 if p50 > 0 else math.inf}


def agree(a: dict[str, float], b: dict[str, float]) -> bool:
    """Return whether two timings of one row agree: medians within the larger IQR of the two."""
    return abs(a["p50"] - b["p50"]) <= max(a["iqr"], b["iqr"])


# --- machine facts -------------------------------------------------------------------------------

PACKAGES = ("torch", "onnxruntime", "onnx", "tensorrt", "cv2", "numpy")


def _version(module: str) -> str | None:
    try:
        return str(import_module(module).__version__)
    except Exception:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        return None
    return round(kb / 2**20, 1)


def _gpu_facts() -> dict[str, Any] | None:
    """Return name, compute capability, CUDA and driver of GPU 0 when torch sees one (else None)."""
    try:
        import torch
    except Exception:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    facts = {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
             "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda}
    facts["driver"] = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return facts


def _jetson_facts() -> dict[str, Any] | None:
    """Return model, L4T release and nvpmodel power mode on a Jetson (else None)."""
    model = Path("/proc/device-tree/model")
    release = Path("/etc/nv_tegra_release")
    if not release.exists() and not (model.exists() and "jetson" in model.read_text(errors="ignore").lower()):
        return None
    return {"model": model.read_text(errors="ignore").strip("\x00\n ") if model.exists() else None,
            "l4t": release.read_text(errors="ignore").splitlines()[0] if release.exists() else None,
            # both may need sudo: None then means "not readable", not "off"
            "power_mode": _run(["nvpmodel", "-q"]),
            "jetson_clocks": _run(["jetson_clocks", "--show"])}


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return " ".join(out.split()) or None


def machine_facts() -> dict[str, Any]:
    """Return what the numbers depend on: host, CPU, cores, memory, GPU, Jetson, package versions."""
    versions = {name if name != "cv2" else "opencv": _version(name) for name in PACKAGES}
    ort_providers = None
    if versions["onnxruntime"]:
        ort_providers = import_module("onnxruntime").get_available_providers()
    facts: dict[str, Any] = {
        "host": socket.gethostname(), "os": platform.platform(), "python": platform.python_version(),
        "cpu": _cpu_name(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
        "gpu": _gpu_facts(), "jetson": _jetson_facts(), "versions": versions, "ort_providers": ort_providers,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    gpu = facts["gpu"]
    facts["summary"] = (f"{facts['cpu']} ({facts['cores']} cores)"
                        + (f", {gpu['name']} (CUDA {gpu['cuda']}, driver {gpu['driver']})" if gpu else ", no GPU"))
    return facts


# --- compare --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ratio:
    """One compared cell: B / A, and whether the difference exceeds the rows' spread."""

    row: str
    column: str
    a: float
    b: float
    ratio: float | None
    significant: bool | None  # None: no spread recorded, so no claim either way


def spread_key(key: str) -> str | None:
    """Return the key holding the spread of a timed column (``ms_p50`` -> ``ms_iqr``), else None."""
    return key[: -len("p50")] + "iqr" if key.endswith("p50") else None


def compare(a: SuiteResult, b: SuiteResult) -> list[Ratio]:
    """Return B/A for every numeric cell present in both runs, rows matched by name.

    A timed cell whose IQR is recorded counts as a difference only when the medians differ by
    more than the larger IQR of the two runs (otherwise the runs agree within their spread).
    """
    if a.suite != b.suite:
        raise OptionError(f"cannot compare a {a.suite!r} run with a {b.suite!r} run")
    b_rows = {r.name: r for r in b.rows}
    out = []
    for ra in a.rows:
        rb = b_rows.get(ra.name)
        if rb is None:
            continue
        for key, va in ra.values.items():
            vb = rb.values.get(key)
            if not _is_number(va) or not _is_number(vb) or key.endswith("iqr"):
                continue
            ratio = vb / va if va else None
            sk = spread_key(key)
            sig = None
            if sk and _is_number(ra.values.get(sk)) and _is_number(rb.values.get(sk)):
                sig = abs(vb - va) > max(ra.values[sk], rb.values[sk])
            out.append(Ratio(ra.name, key, va, vb, ratio, sig))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def compare_table(a: SuiteResult, b: SuiteResult, ratios: list[Ratio]) -> Any:
    """Return a Rich table of the ratios (B / A), marking differences within the spread with '≈'."""
    from rich.table import Table

    table = Table(title=f"{b.suite}: B / A — A {a.machine.get('host')} {a.created[:10]}, "
                        f"B {b.machine.get('host')} {b.created[:10]}")
    for col in ("row", "value", "A", "B", "B / A", ""):
        table.add_column(col, justify="left" if col in ("row", "value", "") else "right")
    for r in ratios:
        flag = {True: "differs", False: "≈ within spread", None: ""}[r.significant]
        table.add_row(r.row, r.column, f"{r.a:.4g}", f"{r.b:.4g}",
                      "-" if r.ratio is None else f"{r.ratio:.2f}×", flag)
    return table


# --- options every suite takes -------------------------------------------------------------------

DEFAULT_MODEL = "runs/demo/vst/last.pt"
DEFAULT_DATA = "cityscapes-vps:data/synth/target"
DEFAULT_SIZES = ((256, 512), (512, 1024))


@dataclass(frozen=True)
class SuiteOptions:
    """The options of ``python -m benchmarks SUITE`` (see ``benchmarks/__main__.py``)."""

    model: str = DEFAULT_MODEL
    data: str = DEFAULT_DATA
    device: str = "cpu"
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    out: Path = Path("benchmarks/results")
    runs: int = 50
    warmup: int = 10
    threads: int = 0  # CPU threads for ORT / torch (0: one per core)

    def settings(self) -> dict[str, Any]:
        return {"model": self.model, "data": self.data, "device": self.device,
                "sizes": [f"{h}x{w}" for h, w in self.sizes], "runs": self.runs, "warmup": self.warmup,
                "threads": self.threads or os.cpu_count()}


def parse_sizes(text: str, multiple: int = 32) -> tuple[tuple[int, int], ...]:
    """Return ``((H, W), ...)`` from ``256x512,512x1024``: each read by ``vsda_deploy.options.parse_hw``, and a
    multiple of ``multiple`` (the benchmarks time and train the models at their strides' sizes)."""
    sizes = tuple(parse_hw(part, "--sizes") for part in text.split(",") if part.strip())
    if not sizes:
        raise OptionError("--sizes: give at least one HxW")
    for h, w in sizes:
        if h % multiple or w % multiple:
            raise OptionError(f"--sizes: {h}x{w} is not HxW with H and W multiples of {multiple} (e.g. 256x512)")
    return sizes


def dataset_root(spec: str) -> Path:
    """Return the folder of a ``cityscapes-vps:ROOT`` spec with a ``val`` split; SystemExit otherwise."""
    kind, _, root = spec.partition(":")
    if kind != "cityscapes-vps" or not root:
        raise SystemExit(f"error: --data {spec!r}: give cityscapes-vps:ROOT (the labelled target videos)")
    path = Path(root)
    if not (path / "val").is_dir():
        raise SystemExit(f"error: --data {spec}: {path / 'val'} not found (run `make demo` to generate "
                         "the synthetic benchmark, or point --data at a Cityscapes-VPS root)")
    return path
