"""How far InferRoute's quality predictions transfer: seeds, leave-one-dataset-out, MT-Bench.

    python benchmarks/router_transfer.py [--seeds 0,1,2] [--lodo routellm_gsm8k,routellm_mmlu]

On the evals suite (evals/configs/benchmarks.yaml, same train frame and test split as
`python -m evals evaluate`), with the static embedder distilled once and shared by every run:
- the test-split score of every benchmark for several training seeds (how much is noise);
- leave-one-dataset-out: train without a dataset's rows (and without any other source's rows of the
  same prompt text), then judge that dataset's test split; for a RouteLLM dataset this removes every
  GPT-4-1106 vs Mixtral comparison on that kind of prompt;
- MT-Bench (never trained on) per category: mean predicted and true GPT-4 minus Mixtral gap, and the
  Spearman correlation of the two over prompts;
- AlpacaEval 2 (55 models on the same open-ended prompts): how far the top third of models is ahead
  of the bottom third, per predicted task type.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

GPT4, MIX = "GPT-4-1106-preview", "Mixtral-8x7B-Instruct"


def _headline(res: Any) -> dict[str, float]:
    out = {}
    for name, br in res.benchmarks.items():
        m = br.metrics
        out[name] = round(float(m["apgr"] if "apgr" in m else m.get("aiq", m["best_quality"])), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--lodo", default="routellm_gsm8k,routellm_mmlu")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    os.environ.setdefault("INFERBASE_DATA_DIR", str(shared))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import inferroute
    from evals import experiments, our_router
    from evals.harness import run_eval
    from evals.suite import SuiteConfig, load_suite, train_frame
    from inferroute.features import StaticEmbedder

    cfg = SuiteConfig.load()
    df, _ = load_suite(cfg)
    train = train_frame(df, cfg)
    labels = experiments.labels_split(cfg, "train")
    rc = our_router.router_config()
    scored = train[train["score"].notna()].drop_duplicates("prompt_id")
    texts = scored["prompt"].astype(str).tolist() + labels["prompt"].astype(str).tolist()
    embedder = StaticEmbedder.distill(
        texts, rc.static_dim, rc.max_chars, rc.max_tokens, rc.seed, rc.static_source
    )
    specs = cfg.on_split("test")
    out: dict[str, Any] = {"seeds": {}, "lodo": {}}
    router = None
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        r = inferroute.train(train, labels, rc.with_overrides(seed=seed), embedder=embedder)
        out["seeds"][seed] = _headline(
            run_eval(our_router.QualityView(r), df, specs, timing_prompts=0)
        )
        router = router or r
    for held in [d for d in args.lodo.split(",") if d]:
        held_text = set(df.loc[df["dataset"] == held, "prompt"])
        sub = train[(train["dataset"] != held) & ~train["prompt"].isin(held_text)]
        r = inferroute.train(sub, labels, rc, embedder=embedder)
        names = {s.name for s in specs if held in s.datasets} | {"mt_bench"}
        res = run_eval(
            our_router.QualityView(r), df, [s for s in specs if s.name in names], timing_prompts=0
        )
        out["lodo"][held] = _headline(res)
    if router is not None:
        out["mt_bench_by_category"] = _mt_bench_gaps(router, df)
        out["alpaca_eval2_spread_by_task"] = _spread_by_task(router, train, "alpaca_eval2")
    print(json.dumps(out, indent=1))


def _mt_bench_gaps(router: Any, df: Any) -> dict[str, Any]:
    from scipy.stats import spearmanr

    mt = df[df["dataset"] == "routellm_mt_bench"].pivot_table(
        index=["prompt", "subset"], columns="model", values="score"
    )
    mt = mt.reset_index()
    q = router.predict_quality(mt["prompt"].tolist(), [GPT4, MIX])
    mt["predicted_gap"] = q[:, 0] - q[:, 1]
    mt["true_gap"] = mt[GPT4] - mt[MIX]
    by = mt.groupby("subset")[["predicted_gap", "true_gap"]].mean().round(3)
    rho = spearmanr(mt["predicted_gap"], mt["true_gap"]).statistic
    return {"categories": by.to_dict(orient="index"), "spearman": round(float(rho), 3)}


def _spread_by_task(router: Any, train: Any, dataset: str) -> dict[str, Any]:
    """Per predicted task type: mean over train prompts of (mean score of the top third of models)
    minus (mean score of the bottom third), models ranked by their overall mean on `dataset`."""
    piv = train[train["dataset"] == dataset].pivot_table(
        index="prompt", columns="model", values="score"
    )
    piv = piv.loc[:, piv.notna().mean() > 0.9]
    order = piv.mean().sort_values().index
    k = max(1, len(order) // 3)
    gap = (piv[order[-k:]].mean(axis=1) - piv[order[:k]].mean(axis=1)).to_numpy()
    tasks = [t for t, _ in router.classify([str(p) for p in piv.index])]
    import pandas as pd

    by = pd.DataFrame({"task": tasks, "gap": gap}).groupby("task")["gap"].agg(["size", "mean"])
    return {
        t: {"prompts": int(r["size"]), "gap": round(float(r["mean"]), 3)} for t, r in by.iterrows()
    }


if __name__ == "__main__":
    main()
