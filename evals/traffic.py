"""Routing decisions on real traffic: ShareGPT prompts through a trained router, per pool and mode.

    df = route_traffic(router, sharegpt_prompts(600), POOLS)   # one row per prompt x pool x mode
    mode_summary(df)        # per pool and mode: expected spend, predicted quality, latency, shares
    mode_order(summary)     # violations of cost <= balanced <= quality (spend; quality reversed)
                            # and of "latency has the lowest expected latency"; [] when all hold
    mix(df, "task"), mix(df, "complexity")

Pools: the RouteLLM pair, the production catalog's two Qwen3 models (cards from data/catalog.yaml,
as serving builds them) and a three-model RouterBench pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from evals import datasets as D
from evals.tracking import REPO_ROOT

MODES = ("quality", "balanced", "cost", "latency")
CATALOG_PATH = REPO_ROOT / "data" / "catalog.yaml"


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    models: tuple[str, ...]
    catalog: Path | None = None  # take the cards from a serving catalog (else the router's own)


POOLS: tuple[Pool, ...] = (
    Pool("RouteLLM pair", ("Mixtral-8x7B-Instruct", "GPT-4-1106-preview")),
    Pool("production catalog", ("Qwen/Qwen3-14B", "Qwen/Qwen3-32B"), CATALOG_PATH),
    Pool(
        "RouterBench 3",
        ("Mistral-7B-Instruct (RouterBench)", "Mixtral-8x7B-Instruct", "GPT-4-1106-preview"),
    ),
)


def catalog_cards(path: Path = CATALOG_PATH) -> dict[str, Any]:
    """ModelCards from a serving catalog file, as serving's router client builds them."""
    from evals.our_router import ModelCard

    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = {}
    for m in doc["models"]:
        price, lat, routing = m["price_usd_per_mtok"], m.get("latency", {}), m.get("routing", {})
        out[m["id"]] = ModelCard(
            id=m["id"],
            input_price_per_mtok=float(price["input"]),
            output_price_per_mtok=float(price["output"]),
            context_length=int(m.get("context_length", 8192)),
            ttft_ms=float(lat.get("ttft_ms", 200.0)),
            tpot_ms=float(lat.get("tpot_ms", 20.0)),
            quality_proxy=routing.get("quality_proxy"),
            quality_prior=routing.get("quality_prior"),
        )
    return out


def sharegpt_prompts(n: int = 600, seed: int = 0) -> list[str]:
    """`n` ShareGPT first turns, a seeded sample (the same for every caller)."""
    df = D.load("sharegpt")
    return df.sample(n=min(n, len(df)), random_state=seed)["prompt"].astype(str).tolist()


def route_traffic(
    router: Any,
    prompts: Sequence[str],
    pools: Sequence[Pool] = POOLS,
    modes: Sequence[str] = MODES,
) -> pd.DataFrame:
    """One row per (prompt, pool, mode): the decision and the chosen model's expected cost,
    latency and predicted quality (the quality the decision used)."""
    rows = []
    for pool in pools:
        cards = catalog_cards(pool.catalog) if pool.catalog is not None else None
        for i, text in enumerate(prompts):
            messages = [{"role": "user", "content": text}]
            for mode in modes:
                d = router.route(messages, list(pool.models), optimize=mode, cards=cards)
                c = d.candidates[d.model]
                rows.append(
                    {
                        "prompt": i,
                        "pool": pool.name,
                        "mode": mode,
                        "model": d.model,
                        "task": d.task,
                        "complexity": d.complexity,
                        "confidence": d.confidence,
                        "low_confidence": bool(d.extra.get("low_confidence", False)),
                        "cost": c.cost,
                        "latency_ms": c.latency_ms,
                        "quality": c.quality,
                    }
                )
    return pd.DataFrame(rows)


def mode_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per pool and mode: mean expected spend (USD per request), predicted quality and latency,
    and the share of requests each model receives (columns `share:<model>`)."""
    g = df.groupby(["pool", "mode"], sort=False)
    out = g.agg(
        spend=("cost", "mean"), quality=("quality", "mean"), latency_ms=("latency_ms", "mean")
    )
    shares = df.groupby(["pool", "mode"], sort=False)["model"].value_counts(normalize=True)
    wide = shares.unstack(fill_value=0)
    wide.columns = [f"share:{c}" for c in wide.columns]
    return out.join(wide).reset_index()


def mode_order(summary: pd.DataFrame, tol: float = 1e-9) -> list[str]:
    """What breaks the promised orders, per pool: spend cost <= balanced <= quality, predicted
    quality the other way, and `latency` the lowest mean expected latency of the four modes."""
    problems = []
    for pool, g in summary.groupby("pool", sort=False):
        cols = ["spend", "quality", "latency_ms"]
        rows = g.set_index("mode")[cols].astype(float).to_dict("index")
        m = {str(k): {str(c): float(v) for c, v in r.items()} for k, r in rows.items()}
        for lo, hi in (("cost", "balanced"), ("balanced", "quality")):
            if m[lo]["spend"] > m[hi]["spend"] * (1 + tol) + tol:
                problems.append(f"{pool}: spend {lo} {m[lo]['spend']:.3g} > {hi} "
                                f"{m[hi]['spend']:.3g}")  # fmt: skip
            if m[lo]["quality"] > m[hi]["quality"] + tol:
                problems.append(f"{pool}: quality {lo} {m[lo]['quality']:.4f} > {hi} "
                                f"{m[hi]['quality']:.4f}")  # fmt: skip
        fastest = min(v["latency_ms"] for v in m.values())
        if m["latency"]["latency_ms"] > fastest * (1 + tol) + tol:
            problems.append(f"{pool}: latency mode {m['latency']['latency_ms']:.0f} ms is not "
                            f"the lowest ({fastest:.0f} ms)")  # fmt: skip
    return problems


def mix(df: pd.DataFrame, column: str) -> pd.Series:
    """Share of the prompts per value of `column` ("task", "complexity"), each prompt once."""
    once = df.drop_duplicates("prompt")
    return once[column].value_counts(normalize=True).rename(column)


def markdown(summary: pd.DataFrame, mixes: Mapping[str, pd.Series], n_prompts: int) -> str:
    """The results.md section: task and complexity mix, and per pool and mode where requests go."""
    lines = [
        f"## Real traffic: {n_prompts} ShareGPT prompts",
        "",
        "What the router decides on real ChatGPT first turns (unlabelled, `evals.traffic`): the "
        "task and complexity mix, and per pool and optimize mode the mean expected spend per "
        "request, the mean predicted quality, the mean expected latency and the share each model "
        "receives.",
        "",
    ]
    for name, s in mixes.items():
        cells = ", ".join(f"{k} {v:.0%}" for k, v in s.items())
        lines += [f"{name}: {cells}", ""]
    for pool, g in summary.groupby("pool", sort=False):
        share_cols = [c for c in g.columns if c.startswith("share:") and g[c].sum() > 0]
        head = " | ".join(c.removeprefix("share:") for c in share_cols)
        lines += [
            f"### {pool}",
            "",
            f"| mode | spend (USD/1k req) | quality | latency (ms) | {head} |",
            "|---|---:|---:|---:|" + "---:|" * len(share_cols),
        ]
        for _, r in g.iterrows():
            shares = " | ".join(f"{r[c]:.0%}" for c in share_cols)
            lines.append(
                f"| {r['mode']} | {r['spend'] * 1000:.3f} | {r['quality']:.3f} | "
                f"{r['latency_ms']:.0f} | {shares} |"
            )
        lines.append("")
    return "\n".join(lines)


def traffic_report(router: Any, n: int = 600, seed: int = 0) -> dict[str, Any]:
    """Everything the report and the notebook show, as plain data (JSON-serialisable)."""
    prompts = sharegpt_prompts(n, seed)
    df = route_traffic(router, prompts)
    summary = mode_summary(df)
    mixes = {"task mix": mix(df, "task"), "complexity mix": mix(df, "complexity")}
    low = float(df.drop_duplicates("prompt")["low_confidence"].mean())
    return {
        "n": len(prompts),
        "summary": summary.to_dict("records"),
        "mixes": {k: {str(i): float(v) for i, v in s.items()} for k, s in mixes.items()},
        "low_confidence_share": low,
        "order_violations": mode_order(summary),
        "markdown": markdown(summary, mixes, len(prompts)),
    }


def share_table(summary: pd.DataFrame) -> pd.DataFrame:
    """(pool, mode) x model table of request shares, for a stacked-bar chart."""
    cols = [c for c in summary.columns if c.startswith("share:")]
    wide = summary.set_index(["pool", "mode"])[cols].fillna(0.0)
    return wide.rename(columns=lambda c: c.removeprefix("share:"))
