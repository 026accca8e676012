"""How far the router's int8 task encoder is from the fp32 graph it is quantised from, on unlabelled
real prompts (ShareGPT's validation split): the share of prompts whose task agrees with fp32's,
and the mean change in confidence. No labels are read, so choosing the quantisation by this does
not tune on the held-out task labels.

    python benchmarks/encoder_quant.py [--n 1500]

Fine-tunes the encoder as `evals train` does (the suite's train labels, data/router.yaml), keeps
its fp32 graph, and compares ONNX Runtime's dynamic int8 quantisation per output channel (what
routes) and per tensor.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1500)
    args = ap.parse_args()
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    os.environ.setdefault("INFERBASE_DATA_DIR", str(shared))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from evals import experiments, our_router
    from evals.suite import SuiteConfig
    from inferroute.encoder import TaskEncoder, quantize

    cfg = SuiteConfig.load()
    config = our_router.router_config({})
    prompts = experiments.unlabelled_prompts(cfg, "val")["prompt"].astype(str).tolist()[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        served = our_router.fit_task_encoder(
            experiments.labels_split(cfg, "train"), config, keep_fp32=fp32
        )
        per_tensor = Path(tmp) / "per_tensor.onnx"
        quantize(fp32, per_tensor, per_channel=False)

        def like(path: Path) -> TaskEncoder:
            return TaskEncoder(
                path.read_bytes(),
                served.tokenizer_json,
                served.classes,
                served.max_len,
                served.temperature,
            )

        base = like(fp32).predict_proba(prompts)
        rows = [("int8 per channel (routes)", served), ("int8 per tensor", like(per_tensor))]
        print(f"{len(prompts)} ShareGPT validation prompts, against the fp32 graph")
        print(f"{'graph':<26} {'MB':>5} {'task agrees':>11} {'mean |d conf|':>13}")
        for name, enc in rows:
            p = enc.predict_proba(prompts)
            agree = float(np.mean(p.argmax(1) == base.argmax(1)))
            dconf = float(np.abs(p.max(1) - base.max(1)).mean())
            mb = len(enc.onnx_model) / 1e6
            print(f"{name:<26} {mb:>5.1f} {agree:>11.3f} {dconf:>13.3f}")
        print(f"{'fp32':<26} {fp32.stat().st_size / 1e6:>5.1f} {1.0:>11.3f} {0.0:>13.3f}")


if __name__ == "__main__":
    main()
