"""`make bench`: run every benchmark, print one table, write bench/results.json.

Each figure is compared with a baseline measured in the same run (or an absolute target).
``python -m bench.run --quick`` runs smaller sizes; ``--only files,audit`` picks suites.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from shutil import which

from rich.console import Console
from rich.table import Table

from bench.common import Figure

SUITES = {
    "records": "bench.bench_records",
    "files": "bench.bench_files",
    "audit": "bench.bench_audit",
    "secure_read": "bench.bench_secure_read",
    "passwords": "bench.bench_passwords",
    "agenda": "bench.bench_agenda",
    "signaling": "bench.bench_signaling",
    "call": "bench.bench_call",
    "viewer": "bench.bench_viewer",
    "dicomweb": "bench.bench_dicomweb",
    "dimse": "bench.bench_dimse",
}
#: Programs a suite drives as real peers; checked for every chosen suite before any runs, so a
#: missing one stops the run at once rather than after minutes of other suites.
#: (``make bench`` installs them first: tools/ensure-packages.)
NEEDS = {
    "secure_read": ("wrk",),
    "call": ("chromium",),
    "viewer": (),
    "dicomweb": ("Orthanc",),
    "dimse": ("storescu", "Orthanc"),
}
RESULTS = Path(__file__).with_name("results.json")


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", default=",".join(SUITES), help="comma-separated suites")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    chosen = args.only.split(",")
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}; the suites are {', '.join(SUITES)}")
    missing = sorted({cmd for name in chosen for cmd in NEEDS.get(name, ()) if not which(cmd)})
    if missing:
        parser.error(f"missing programs: {', '.join(missing)} (`make bench` installs them)")
    figures: list[tuple[str, Figure]] = []
    for name in chosen:
        console.print(f"[bold]running {name}…[/bold]")
        started = time.perf_counter()
        module = importlib.import_module(SUITES[name])
        for fig in module.run(quick=args.quick):
            figures.append((name, fig))
        console.print(f"  {name}: {time.perf_counter() - started:.1f} s")

    table = Table(title="Secretum benchmarks")
    for col in ("suite", "figure", "value", "baseline", "ratio", "target", "ok"):
        table.add_column(col)
    for suite, f in figures:
        base = f"{f.baseline_value:,.1f} ({f.baseline_name})" if f.baseline_value else "-"
        ok = {True: "[green]yes[/green]", False: "[red]NO[/red]", None: "-"}[f.passed]
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "-"
        table.add_row(suite, f.name, f"{f.value:,.1f} {f.unit}", base, ratio, f.target, ok)
    console.print(table)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": machine(),
                "quick": args.quick,
                "figures": [dict(suite=s, **f.as_dict()) for s, f in figures],
            },
            indent=2,
        )
    )
    console.print(f"written {RESULTS}")
    return 0 if all(f.passed is not False for _, f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
