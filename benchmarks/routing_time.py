"""Routing time, one request at a time, for prompts of about 50, 500 and 2,000 tokens.

    python benchmarks/routing_time.py [--router PATH_OR_MLFLOW_URI] [--n 300]

Without --router it trains the tiny test config on RouterBench + RouteLLM GSM8K (INFERBASE_DATA_DIR)
so the script runs anywhere; pass the saved production router for the real figure. Prompts are real
benchmark prompts (AlpacaEval, MMLU, ...) concatenated to the target length (MiniLM tokenizer
count). Prints a table of p50 / p90 / p99 in milliseconds of `router.route(...)`, measured outside
(wall clock) and inside (`decision.routing_time_ms`), and the share of prompts that ran the task
encoder (the rest were decided by the static classifier alone: config.enc_skip_above). A last row,
`real`, times ShareGPT's validation prompts at their own lengths: the traffic the cascade's share
means most for (benchmark prompts are what the static classifier is surest of). The `20000` row
(no target) shows what a pasted document costs: every part of the decision but the text
statistics reads a prompt cut to its head and tail (config.max_chars), so it stays bounded.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np

POOL = ["GPT-4-1106-preview", "Mixtral-8x7B-Instruct", "Qwen/Qwen3-14B", "Qwen/Qwen3-32B"]
TARGETS = (50, 500, 2000)
LONG = 20000  # tokens of the untargeted last benchmark row (a pasted document)


def _prompts(texts: list[str], target: int, n: int, seed: int) -> list[str]:
    from tokenizers import Tokenizer

    from inferroute.features import minilm_path

    tok = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    tok.no_truncation()  # (the file truncates to 128 tokens and pads: count the whole text)
    tok.no_padding()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        parts: list[str] = []
        count = 0
        while count < target:
            t = texts[int(rng.integers(len(texts)))]
            parts.append(t)
            count += len(tok.encode(t, add_special_tokens=False).ids)
        ids = tok.encode("\n\n".join(parts), add_special_tokens=False).ids[:target]
        out.append(tok.decode(ids))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", default=None)
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    os.environ.setdefault("INFERBASE_DATA_DIR", str(shared))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import pandas as pd

    import inferroute
    from evals import datasets as D
    from evals import experiments
    from evals.suite import SuiteConfig

    scores = pd.concat([D.load("routerbench_zs"), D.load("routellm_gsm8k")], ignore_index=True)
    if args.router:
        router = inferroute.load_router(args.router)
    else:
        from inferroute.config import TINY

        router = inferroute.train(scores, D.load_task_labels(), TINY)
    texts = [t for t in D.load("alpaca_eval2")["prompt"].dropna().unique()] + list(
        scores["prompt"].dropna().unique()[:2000]
    )
    print(f"router {router.version} ({type(router).__name__}), pool of {len(POOL)}, n={args.n}")
    head = ("tokens", "p50 ms", "p90 ms", "p99 ms", "max ms")
    print(
        f"{head[0]:>7} "
        + " ".join(f"{h:>8}" for h in head[1:])
        + "  inner p50/p99   chars  encoder"
    )
    real = experiments.unlabelled_prompts(SuiteConfig.load(), "val")["prompt"].astype(str)
    rows: list[tuple[str, list[str]]] = [
        (str(t), _prompts(texts, t, args.n, seed=t)) for t in TARGETS
    ]
    rows.append((str(LONG), _prompts(texts, LONG, max(args.n // 3, 20), seed=LONG)))
    rows.append(("real", real.sample(min(args.n, len(real)), random_state=0).tolist()))
    for name, prompts in rows:
        for p in prompts[:10]:  # warm-up
            router.route([{"role": "user", "content": p}], POOL)
        wall, inner = [], []
        for p in prompts:
            t0 = time.perf_counter()
            d = router.route([{"role": "user", "content": p}], POOL)
            wall.append((time.perf_counter() - t0) * 1000)
            inner.append(d.routing_time_ms)
        w = np.percentile(wall, [50, 90, 99, 100])
        i = np.percentile(inner, [50, 99])
        print(
            f"{name:>7} {w[0]:8.2f} {w[1]:8.2f} {w[2]:8.2f} {w[3]:8.2f}  {i[0]:6.2f}/{i[1]:6.2f}"
            f" {np.mean([len(p) for p in prompts]):7.0f}   {_encoder_share(router, prompts):6.2f}"
        )


def _encoder_share(router: object, prompts: list[str]) -> float:
    """The share of `prompts` the router's task encoder reads (nan: the router has none)."""
    enc = getattr(router, "encoder", None)
    if enc is None:
        return float("nan")
    _, dense = router.features(prompts)  # type: ignore[attr-defined]
    clf = router.classifier  # type: ignore[attr-defined]
    static = clf.with_support(*clf.proba_and_support(dense, prompts))
    return float((static.max(axis=1) < enc.skip_above).mean())


if __name__ == "__main__":
    main()
