"""What the fine-tuned MiniLM task classifier (evals.encoder) would cost on the routing path: one
prompt at a time, for prompts of about 50, 500 and 2,000 tokens, truncated to `max_len` tokens.

    python benchmarks/encoder_time.py [--n 100] [--threads 1 2] [--max-len 64 128]

The head is untrained (its weights do not change the time). Prompts are built as in
`routing_time.py`. Prints p50 / p99 in milliseconds of `EncoderClassifier.predict_proba([prompt])`
(tokenising included), against the routing budget (p99 <= 30 ms for the whole decision).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from routing_time import TARGETS, _prompts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--max-len", type=int, nargs="+", default=[64, 128])
    args = ap.parse_args()
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    os.environ.setdefault("INFERBASE_DATA_DIR", str(shared))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from evals import datasets as D
    from evals.encoder import EncoderClassifier, load_minilm
    from evals.our_router import TASK_NAMES

    tokenizer, encoder = load_minilm()
    head = torch.nn.Linear(int(encoder.config.hidden_size), len(TASK_NAMES))
    texts = list(D.load("alpaca_eval2")["prompt"].dropna().unique())
    prompts = {t: _prompts(texts, t, args.n, seed=t) for t in TARGETS}
    print(f"MiniLM-L6 + linear head, one prompt at a time, n={args.n}")
    print(f"{'threads':>7} {'max_len':>7} " + " ".join(f"{t:>6} tok p50/p99 ms" for t in TARGETS))
    for threads in args.threads:
        torch.set_num_threads(threads)
        for max_len in args.max_len:
            model = EncoderClassifier(tokenizer, encoder, head, list(TASK_NAMES), max_len)
            cells = []
            for t in TARGETS:
                for p in prompts[t][:5]:  # warm-up
                    model.predict_proba([p])
                wall = []
                for p in prompts[t]:
                    t0 = time.perf_counter()
                    model.predict_proba([p])
                    wall.append((time.perf_counter() - t0) * 1000)
                p50, p99 = np.percentile(wall, [50, 99])
                cells.append(f"{p50:9.1f} / {p99:5.1f}")
            print(f"{threads:>7} {max_len:>7} " + " ".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    main()
