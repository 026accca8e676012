"""Complexity cut rules compared on one trained router (inference only; issue 12's check of the
~60% `complex` share on ShareGPT).

    python benchmarks/complexity_cuts.py ROUTER_DIR_OR_URI

For the router's complexity scores, recomputes the simple / complex cuts from the train split's
difficulty labels under each rule (inferroute.difficulty.cuts: "youden", "prevalence") and under
the three-level balanced-accuracy optimum (a grid of train-score quantiles), and prints for each:
the simple / medium / complex mix on the train and test labelled prompts (FLASK, just-eval), on the
600 ShareGPT prompts of evals.traffic and the everyday fixture's shares, plus the held-out
three-level accuracy, and how the score follows prompt length on ShareGPT and on the labels.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.stats import spearmanr


def main() -> None:
    from evals import experiments, our_router, realprompts, traffic
    from evals.suite import SuiteConfig
    from inferroute.difficulty import cuts

    r = our_router.load(sys.argv[1])
    cfg = SuiteConfig.load()
    tr, te = (experiments.real_prompts(cfg, s)["difficulty"] for s in ("train", "test"))
    ev, sg = realprompts.load_everyday(), traffic.sharegpt_prompts(600)

    def score(texts: list[str]) -> np.ndarray:
        return np.asarray(r.complexity(texts), dtype=float)

    s_tr, s_te = score(tr["prompt"].astype(str).tolist()), score(te["prompt"].astype(str).tolist())
    s_ev, s_sg = score(ev["prompt"].astype(str).tolist()), score(sg)

    def level(y: np.ndarray) -> np.ndarray:
        return np.where(y <= 1e-9, 0, np.where(y >= 0.75 - 1e-9, 2, 1))

    y_tr, y_te = level(tr["difficulty"].to_numpy()), level(te["difficulty"].to_numpy())

    def lab(s: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return np.where(s < lo, 0, np.where(s < hi, 1, 2))

    def bacc(pred: np.ndarray, truth: np.ndarray) -> float:
        return float(np.mean([np.mean(pred[truth == k] == k) for k in range(3)]))

    grid = np.quantile(s_tr, np.linspace(0.02, 0.98, 97))
    _, b_lo, b_hi = max((bacc(lab(s_tr, a, b), y_tr), a, b) for a in grid for b in grid if b > a)
    rules = {
        "youden": cuts(s_tr, y_tr == 0, y_tr == 2, "youden"),
        "prevalence": cuts(s_tr, y_tr == 0, y_tr == 2, "prevalence"),
        "3-level balanced accuracy": (float(b_lo), float(b_hi)),
    }
    print(f"router's own cuts: {r.complexity_cuts}")
    print("labelled mix (simple / medium / complex): train "
          + " / ".join(f"{np.mean(y_tr == k):.2f}" for k in range(3)) + ", test "
          + " / ".join(f"{np.mean(y_te == k):.2f}" for k in range(3)))  # fmt: skip
    print("\n| rule | cuts | train mix | test mix | ShareGPT mix | everyday simple / complex "
          "| test 3-level acc |\n|---|---|---|---|---|---|---:|")  # fmt: skip
    for name, (lo, hi) in rules.items():
        mix = [" / ".join(f"{np.mean(lab(s, lo, hi) == k):.2f}" for k in range(3))
               for s in (s_tr, s_te, s_sg)]  # fmt: skip
        le = lab(s_ev, lo, hi)
        simple = np.mean(le[ev["complexity"].to_numpy() == "simple"] == 0)
        complex_ = np.mean(le[ev["complexity"].to_numpy() == "complex"] == 2)
        acc = np.mean(lab(s_te, lo, hi) == y_te)
        print(f"| {name} | {lo:.3f} / {hi:.3f} | {mix[0]} | {mix[1]} | {mix[2]} "
              f"| {simple:.2f} / {complex_:.2f} | {acc:.3f} |")  # fmt: skip
    n_sg, n_tr = np.array([len(t) for t in sg]), np.array([len(t) for t in tr["prompt"]])
    long = n_sg >= 2 * np.median(n_tr)
    hi = r.complexity_cuts[1]
    print(f"\nSpearman(score, length): ShareGPT {spearmanr(s_sg, n_sg).statistic:.2f}, labelled "
          f"train {spearmanr(s_tr, n_tr).statistic:.2f}; ShareGPT called complex (router's cuts): "
          f"{np.mean(s_sg[long] >= hi):.2f} of the {long.sum()} longer than twice the labelled "
          f"median, {np.mean(s_sg[~long] >= hi):.2f} of the others")  # fmt: skip


if __name__ == "__main__":
    main()
