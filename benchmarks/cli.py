"""Benchmark: start-up time of `newsletter --version` and `newsletter --help` (goal: median <= 0.3 s).

    .venv/bin/python benchmarks/cli.py [--runs 15]

Each run is a fresh process, as a user's shell starts one. The command loads only Typer and Rich:
each command imports its stage packages when it runs, and only commands that need the database
open it. The baseline, measured in the same run, is the same command with every stage package and
the database layer (SQLAlchemy, Alembic) imported first, as every command did before.

Prints one JSON document, with the machine's load average beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

GOAL_SECONDS = 0.3
EAGER = ("import newsletter.content, newsletter.render, newsletter.members, newsletter.delivery, "
         "newsletter.schedule, newsletter.db, alembic.command; ")


def median_seconds(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    result: dict[str, object] = {"runs": args.runs, "goal_seconds": GOAL_SECONDS,
                                 "load_average_before": os.getloadavg()[0]}
    for flag in ("--version", "--help"):
        code = f"from newsletter.cli import main; main([{flag!r}])"
        lazy = median_seconds(code, args.runs)
        eager = median_seconds(EAGER + code, args.runs)
        result[flag] = {"median_seconds": round(lazy, 3), "naive_median_seconds": round(eager, 3),
                        "ratio": round(eager / lazy, 1), "goal_met": lazy <= GOAL_SECONDS}
    result["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
