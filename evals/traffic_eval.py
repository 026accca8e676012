"""A router judged on an operator's own traffic (the `traffic` dataset's newest split).

    cards = pool_cards()                        # the serving catalog's cards of the pool models
    evaluate_traffic(router, prefs[prefs.split == "test"], cards)
    # {"traffic_win_rate": ..., "traffic_apgr": ..., "traffic_pairs": ..., ...}

Each side-by-side pair's labels (votes, verdicts) are merged into one outcome, their mean weighted
by source (the router config's `pref_w_*`: a person's vote counts most). `traffic_win_rate`: the
share of pairs with a winner where the router's predicted quality ranks the winner first.
`traffic_apgr`: RouteLLM's APGR on the most compared model pair, each answer scored 1 (won),
0 (lost) or 0.5 (tie), the dearer model (catalog prices) as the strong one, the router's predicted
quality gap as its strong-win score (NaN when the two models win about equally often: no gap).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evals import metrics as M
from evals.tracking import REPO_ROOT

SOURCE_KEYS = {"vote": "pref_w_vote", "verdict": "pref_w_verdict", "feedback": "pref_w_feedback"}
DEFAULT_WEIGHTS = {"vote": 1.0, "verdict": 0.5, "feedback": 0.25}


def catalog_path() -> Path:
    """The catalog the gateway serves: `INFERBASE_CATALOG`, else serving's default."""
    value = os.environ.get("INFERBASE_CATALOG")
    return Path(value) if value else REPO_ROOT / "data" / "catalog.local.yaml"


def pool_cards(path: Path | None = None) -> dict[str, Any]:
    """ModelCards of the catalog's models, as serving's router client builds them."""
    from evals.traffic import catalog_cards

    return catalog_cards(path or catalog_path())


def source_weights(router: Any = None) -> dict[str, float]:
    cfg = getattr(router, "config", None)
    return {s: float(getattr(cfg, k, DEFAULT_WEIGHTS[s])) for s, k in SOURCE_KEYS.items()}


def consensus(prefs: pd.DataFrame, weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per pair record: prompt, model_a, model_b, outcome (weighted mean), weight."""
    weights = weights or DEFAULT_WEIGHTS
    pairs = prefs[prefs["kind"] == "pair"].copy()
    pairs["w"] = pairs["source"].map(weights).fillna(0.0).astype(float)
    pairs = pairs[pairs["w"] > 0]
    pairs["wy"] = pairs["w"] * pairs["outcome"].astype(float)
    g = pairs.groupby("record_id", sort=False)
    out = g.agg(
        created_at=("created_at", "first"),
        prompt=("prompt", "first"),
        task=("task", "first"),
        model_a=("model_a", "first"),
        model_b=("model_b", "first"),
        wy=("wy", "sum"),
        weight=("w", "sum"),
    ).reset_index()
    out["outcome"] = out["wy"] / out["weight"]
    return out.drop(columns="wy").sort_values(["created_at", "record_id"]).reset_index(drop=True)


def predicted_pair_quality(
    router: Any, pairs: pd.DataFrame, cards: Mapping[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(q_a, q_b) per pair: the router's predicted quality of each side on the pair's prompt."""
    prompts = sorted(set(pairs["prompt"].astype(str)))
    models = sorted(set(pairs["model_a"].astype(str)) | set(pairs["model_b"].astype(str)))
    q = np.asarray(router.predict_quality(prompts, models, dict(cards or {})), dtype=float)
    pi = pairs["prompt"].astype(str).map({p: i for i, p in enumerate(prompts)}).to_numpy()
    mi = {m: i for i, m in enumerate(models)}
    qa = q[pi, pairs["model_a"].astype(str).map(mi).to_numpy()]
    qb = q[pi, pairs["model_b"].astype(str).map(mi).to_numpy()]
    return qa, qb


def _price(card: Any) -> tuple[float, float]:
    if card is None:
        return (0.0, 0.0)
    return (float(card.output_price_per_mtok), float(card.input_price_per_mtok))


def evaluate_traffic(
    router: Any, prefs: pd.DataFrame, cards: Mapping[str, Any] | None = None
) -> dict[str, float]:
    """Win rate and APGR of `router` on labelled traffic (pass the held-out split)."""
    pairs = consensus(prefs, source_weights(router))
    out: dict[str, float] = {"traffic_pairs": float(len(pairs))}
    if pairs.empty:
        return out | {"traffic_win_rate": float("nan"), "traffic_apgr": float("nan")}
    qa, qb = predicted_pair_quality(router, pairs, cards)
    out["traffic_win_rate"] = M.traffic_win_rate(qa - qb, pairs["outcome"], pairs["weight"])
    key = pairs.apply(lambda r: tuple(sorted((str(r.model_a), str(r.model_b)))), axis=1)
    top = key.value_counts().index[0]
    sel = (key == top).to_numpy()
    cards = cards or {}
    m1, m2 = top
    y = pairs["outcome"].to_numpy(dtype=float)[sel]
    a_is_m1 = (pairs["model_a"].astype(str) == m1).to_numpy()[sel]
    s1 = np.where(a_is_m1, y, 1.0 - y)
    g1 = np.where(a_is_m1, qa[sel] - qb[sel], qb[sel] - qa[sel])  # predicted q_m1 - q_m2
    p1, p2 = _price(cards.get(m1)), _price(cards.get(m2))
    m1_strong = p1 > p2 if p1 != p2 else s1.mean() >= 0.5
    strong, weak, gap = (s1, 1.0 - s1, g1) if m1_strong else (1.0 - s1, s1, -g1)
    out["traffic_apgr"] = M.traffic_apgr(gap, strong, weak)
    out["traffic_apgr_pairs"] = float(sel.sum())
    return out
