"""Published anchors beside our numbers.

- RouteLLM's own APGR / CPT numbers, transcribed in configs/anchors.yaml (with the citation).
- Martian and Unify on MT-Bench, computed here from their routed answers' GPT-4 judgments in the
  data (`mt_bench_commercial`): each is one operating point, so we report its mean score, its
  performance gap recovered (PGR) between Mixtral and GPT-4 on the same questions, and, for Unify,
  the share of questions it sent to GPT-4 (its answers record the model; Martian's do not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evals import datasets as D
from evals import metrics as M
from evals.suite import CONFIG_DIR

STRONG, WEAK = "GPT-4-1106-preview", "Mixtral-8x7B-Instruct"


def paper_anchors(path: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    raw = yaml.safe_load((path or CONFIG_DIR / "anchors.yaml").read_text(encoding="utf-8"))
    return dict(raw["routellm_paper"])


def commercial_anchors() -> list[dict[str, Any]]:
    """Martian / Unify operating points on MT-Bench (scores normalised to 0-1 as the data are)."""
    routed = D.load("mt_bench_commercial")
    pair = D.load("routellm_mt_bench")
    common = set(routed["prompt_id"]) & set(pair["prompt_id"])
    pair = pair[pair["prompt_id"].isin(common)]
    strong = float(pair.loc[pair["model"] == STRONG, "score"].mean())
    weak = float(pair.loc[pair["model"] == WEAK, "score"].mean())
    out = []
    for name, g in routed[routed["prompt_id"].isin(common)].groupby("model", sort=True):
        row: dict[str, Any] = {
            "router": str(name),
            "score": float(g["score"].mean()),
            "pgr": M.pgr(float(g["score"].mean()), weak, strong),
            "n_prompts": int(g["prompt_id"].nunique()),
        }
        if "unify" in str(name).lower():
            models = D.routellm.unify_routed_models()
            models = models[models["prompt_id"].isin(common)]
            row["strong_pct"] = 100.0 * float(models["routed_model"].str.contains("gpt-4").mean())
        out.append(row)
    out.append({"router": f"{STRONG} (always)", "score": strong, "pgr": 1.0, "strong_pct": 100.0})
    out.append({"router": f"{WEAK} (always)", "score": weak, "pgr": 0.0, "strong_pct": 0.0})
    return out
