"""``python -m bench``: every benchmark section, one table, and ``bench/results.json``.

Sections (each a module of this package with ``run(smoke=…, runs=…) -> {"figures": …}``) run one
after another, each on its own fresh files; ``--only`` picks some. A figure is
``{"description", "unit", "median", "runs", "target"?}``; a target is text such as ``">= 0.2"``
and the table marks each figure against it. ``--smoke`` is the minute-long version CI runs
(small sizes; no target judged).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import versions

RESULTS = Path(__file__).resolve().parent / "results.json"

#: Section name -> module under ``bench``, in the order they run.
SECTIONS = {
    "drain": "bench.drain",
    "latency": "bench.latency",
    "growth": "bench.growth",
    "http": "bench.http",
    "transfer": "bench.transfer",
}


def _shown(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ratio":
        return f"{value:.4f}" if value < 0.1 else f"{value:.2f}"
    if abs(value) < 10:
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def _met(value: float | None, target: str | None) -> str:
    if target is None or value is None:
        return ""
    op, _, bound = target.partition(" ")
    limit = float(bound)
    ok = value >= limit if op == ">=" else value <= limit
    return ("met " if ok else "MISSED ") + target


def table(sections: dict[str, dict], *, judged: bool = True) -> str:
    """One table of every section's figures: description, median, unit and, when ``judged``
    (a full run; a smoke run's sizes cannot meet them), the target met or missed."""
    rows = [
        (f"[{name}] {figure['description']}", figure)
        for name, result in sections.items()
        for figure in result.get("figures", {}).values()
    ]
    width = max((len(label) for label, _ in rows), default=10)
    lines = [f"{'figure':<{width}}  {'median':>12}  {'unit':<8}  target", "-" * (width + 40)]
    for label, figure in rows:
        value = _shown(figure["median"], figure["unit"])
        met = _met(figure["median"], figure.get("target")) if judged else ""
        lines.append(f"{label:<{width}}  {value:>12}  {figure['unit']:<8}  {met}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; median reported (3)")
    parser.add_argument(
        "--smoke", action="store_true", help="small sizes, 1 run, targets not judged: for CI"
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(SECTIONS), help="run only this section"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON file")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    runs = 1 if args.smoke else args.runs
    started = time.perf_counter()
    sections: dict[str, dict] = {}
    failed = []
    for name, module in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        section_started = time.perf_counter()
        try:
            sections[name] = importlib.import_module(module).run(smoke=args.smoke, runs=runs)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            sections[name] = {"error": traceback.format_exc()}
        sections[name]["wall_s"] = time.perf_counter() - section_started
    results = {
        "benchmark": "keeper-sync",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "versions": versions(),
        "parameters": {"runs": runs, "smoke": args.smoke},
        "wall_s": time.perf_counter() - started,
        "sections": sections,
    }
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(table(sections, judged=not args.smoke))
    if args.smoke:
        print("smoke sizes: targets are judged in full runs only")
    print(f"wall {results['wall_s']:.1f} s; wrote {args.output}")
    if failed:
        print(f"sections that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
