"""Where `python -m evals train` spends its time: wall and CPU seconds per stage.

    python benchmarks/train_time.py [--set key=value ...]

Runs what `evals train` runs, without MLflow: load the suite and the real-prompt tables, train
the router on all shared data (INFERBASE_DATA_DIR; `evals.experiments.train_router`), validate it
on the validation split. Prints one row per stage (the stages inferroute.training.train's progress
bar shows) with wall and CPU seconds (`time.process_time`: every thread of this process) and the
machine's load average before and after. Issue 12's target: the whole `evals train` within 10
minutes on the two-core machine. On a shared machine the wall time measures the others' load as
much as the work; CPU seconds do not, and on an idle two-core machine the wall time is at most
about the CPU seconds (the stages are mostly single-threaded).
"""

from __future__ import annotations

import argparse
import os
import time

import yaml


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], help="router config key=value")
    args = p.parse_args()
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}

    from evals import experiments
    from evals.suite import SuiteConfig, load_suite

    load_before = os.getloadavg()
    rows: list[tuple[str, float, float]] = []
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = SuiteConfig.load()
    df, _ = load_suite(cfg)
    rows.append(("load suite", time.perf_counter() - t0, time.process_time() - c0))
    t1, c1 = time.perf_counter(), time.process_time()
    router = experiments.train_router(cfg, overrides, df)
    stages = dict(router.train_timings)
    accounted = (sum(v[0] for v in stages.values()), sum(v[1] for v in stages.values()))
    rows.append(("train: read labels and tables", time.perf_counter() - t1 - accounted[0],
                 time.process_time() - c1 - accounted[1]))  # fmt: skip
    rows += [(f"train: {k}", w, c) for k, (w, c) in stages.items()]
    t2, c2 = time.perf_counter(), time.process_time()
    experiments.validate_router(router, df, cfg.on_split("val"))
    rows.append(("validate", time.perf_counter() - t2, time.process_time() - c2))
    total = (time.perf_counter() - t0, time.process_time() - c0)
    print("| stage | wall s | CPU s |\n|---|---:|---:|")
    for name, w, c in rows:
        print(f"| {name} | {w:.1f} | {c:.1f} |")
    print(f"| **total** | {total[0]:.1f} | {total[1]:.1f} |")
    print(f"\nload average (1, 5, 15 min) before {load_before}, after {os.getloadavg()}; "
          f"{os.cpu_count()} CPUs")  # fmt: skip


if __name__ == "__main__":
    main()
