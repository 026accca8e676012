"""First evaluation of InferRoute on held-out prompts (the full harness lives in `evals`).

    python benchmarks/router_first_eval.py [--router DIR] [--save DIR] [--lodo]

Split: `split_by_prompt(group="text")`, so a question shipped by two sources is in one split;
test prompts (by text) and every MT-Bench prompt are removed from training. Prints task macro-F1,
accuracy and ECE on held-out labelled prompts, and APGR / CPT(50%) of GPT-4-1106 vs Mixtral on
RouteLLM MMLU and GSM8K (test split) and MT-Bench (never trained on). `--lodo` instead trains
with no RouteLLM rows at all (MMLU, GSM8K, MT-Bench) to measure transfer.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

GPT4, MIX = "GPT-4-1106-preview", "Mixtral-8x7B-Instruct"
PAIR_SETS = (("routellm_mmlu", True), ("routellm_gsm8k", True), ("routellm_mt_bench", False))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", default=None, help="evaluate a saved router instead of training")
    ap.add_argument("--save", default=None, help="save the trained router here")
    ap.add_argument("--lodo", action="store_true")
    args = ap.parse_args()
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    os.environ.setdefault("INFERBASE_DATA_DIR", str(shared))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import inferroute
    from evals import datasets as D
    from evals import metrics as M

    s, labels = D.load_scores(), D.load_task_labels()
    s["split"] = s["prompt_id"].map(D.split_by_prompt(s, seed=0, group="text"))
    labels["split"] = labels["prompt_id"].map(D.split_by_prompt(labels, seed=0, group="text"))
    held = {"routellm_mt_bench"} | ({"routellm_mmlu", "routellm_gsm8k"} if args.lodo else set())
    held_text = set(s.loc[s["dataset"].isin(held), "prompt"].dropna())
    test_text = set(s.loc[s["split"] == "test", "prompt"].dropna())
    test_text |= set(labels.loc[labels["split"] == "test", "prompt"].dropna())
    train_s = s[~s["dataset"].isin(held) & ~s["prompt"].isin(held_text)]
    if not args.lodo:
        train_s = train_s[train_s["split"] == "train"]
    train_l = labels[~labels["prompt"].isin(held_text) & ~labels["prompt"].isin(test_text)]
    if args.router:
        router = inferroute.load_router(args.router)
    else:
        router = inferroute.train(train_s, train_l)
        if args.save:
            router.save(args.save)
    res: dict[str, object] = {"router": router.version, "lodo": args.lodo}
    test_l = labels[(labels["split"] == "test") & labels["task"].notna() & labels["prompt"].notna()]
    out = router.classify(test_l["prompt"].tolist())
    truth = test_l["task"].astype(str).tolist()
    pred = [t for t, _ in out]
    correct = np.array([a == b for a, b in zip(pred, truth, strict=True)], dtype=float)
    names = sorted(set(truth))
    res["task"] = {
        "macro_f1": M.macro_f1(truth, pred, names),
        "accuracy": float(correct.mean()),
        "ece": M.ece(np.array([c for _, c in out]), correct),
        "n": len(truth),
    }
    for name, only_test in PAIR_SETS:
        sub = s[s["dataset"] == name]
        if only_test:
            sub = sub[sub["split"] == "test"]
        piv = sub.pivot_table(index="prompt_id", columns="model", values="score").dropna()
        texts = sub.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"].loc[piv.index]
        q = router.predict_quality(texts.tolist(), [GPT4, MIX])
        st, wk = piv[GPT4].to_numpy(), piv[MIX].to_numpy()
        pct, perf = M.threshold_sweep(q[:, 0] - q[:, 1], st, wk)
        res[name] = {
            "n": len(piv),
            "apgr": M.apgr(pct, perf, wk.mean(), st.mean()),
            "cpt50": M.cpt(pct, perf, wk.mean(), st.mean(), 0.5),
        }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
