"""What the router's task encoder (inferroute.encoder: MiniLM-L6 + linear head, int8 ONNX in ONNX
Runtime) costs on the routing path: one prompt at a time, for prompts of about 50, 500 and 2,000
tokens, read to `max_len` tokens, with 1 or 2 ONNX Runtime threads; and the eager fp32 torch model
it replaced, for comparison (`--torch`).

    python benchmarks/encoder_time.py [--n 100] [--threads 1 2] [--max-len 64 128] [--torch]

The head is untrained (its weights do not change the time). Prompts are built as in
`routing_time.py`. Prints p50 / p99 in milliseconds of `predict_proba([prompt])` (tokenising
included), against the routing budget (p99 <= 30 ms for the whole decision; the rest of the
decision takes ~2-3 ms: `routing_time.py`).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from routing_time import TARGETS, _prompts


def _time(fn: Callable[[list[str]], object], prompts: list[str]) -> tuple[float, float]:
    for p in prompts[:5]:  # warm-up
        fn([p])
    wall = []
    for p in prompts:
        t0 = time.perf_counter()
        fn([p])
        wall.append((time.perf_counter() - t0) * 1000)
    p50, p99 = np.percentile(wall, [50, 99])
    return float(p50), float(p99)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--max-len", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--torch", action="store_true", help="also time the eager fp32 torch model")
    args = ap.parse_args()
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    os.environ.setdefault("INFERBASE_DATA_DIR", str(shared))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from evals import datasets as D
    from inferroute.encoder import TaskEncoder, _export_int8, _minilm, _module, _tokenizer, tokenize
    from inferroute.taxonomy import TASK_NAMES

    tokenizer_json, encoder = _minilm()
    model = _module(encoder, len(TASK_NAMES)).eval()
    texts = list(D.load("alpaca_eval2")["prompt"].dropna().unique())
    prompts = {t: _prompts(texts, t, args.n, seed=t) for t in TARGETS}
    print(f"MiniLM-L6 + linear head, one prompt at a time, n={args.n}")
    header = " ".join(f"{t:>6} tok p50/p99 ms" for t in TARGETS)
    print(f"{'runtime':>10} {'threads':>7} {'max_len':>7} {header}")
    for max_len in args.max_len:
        tok = _tokenizer(tokenizer_json, max_len)
        onnx_model = _export_int8(model, tok, max_len)
        for threads in args.threads:
            runs: list[tuple[str, Callable[[list[str]], object]]] = []
            enc = TaskEncoder(onnx_model, tokenizer_json, TASK_NAMES, max_len, threads=threads)
            runs.append(("onnx-int8", enc.predict_proba))
            if args.torch:
                torch.set_num_threads(threads)

                def eager(batch: list[str], tok: object = tok, max_len: int = max_len) -> object:
                    ids, mask = tokenize(tok, batch, max_len)
                    with torch.inference_mode():
                        return model(torch.from_numpy(ids), torch.from_numpy(mask))

                runs.append(("torch-fp32", eager))
            for name, fn in runs:
                cells = [_time(fn, prompts[t]) for t in TARGETS]
                row = " ".join(f"{p50:9.1f} / {p99:5.1f}".rjust(20) for p50, p99 in cells)
                print(f"{name:>10} {threads:>7} {max_len:>7} {row}")


if __name__ == "__main__":
    main()
