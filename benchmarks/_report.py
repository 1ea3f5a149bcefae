"""Shared by the benchmark scripts: rewrite one marked section of docs/benchmarks.md; the median over runs; the CPU's
name."""

import os
import statistics
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_section(name: str, markdown: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the text between `<!-- BEGIN name -->` and `<!-- END name -->` (appended if absent)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def median_over(runs: list[dict], keys: tuple[str, ...]) -> dict:
    """One row for a point measured in several processes: the first run's fields with the median of each of `keys`
    and the number of runs, or the first run that failed (it holds "error"), so that a failure is reported."""
    failed = [run for run in runs if "error" in run]
    if failed:
        return failed[0]
    return {**runs[0], "runs": len(runs), **{key: statistics.median(run[key] for run in runs) for key in keys}}


def cpu_machine() -> str:
    """The CPU's model name and core count, as the CPU benchmarks print it."""
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    return f"{model} ({os.cpu_count()} cores, shared)"
