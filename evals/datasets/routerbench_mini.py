"""RouterBench-Mini V5 (ken-ab/routerbench-mini, no LICENSE file: internal research use only).

800 test prompts (text, vision and tool calling), each answered by qwen3.5-35b-a3b ("cheap") and
qwen3.5-397b-a17b ("strong"): the `always_cheap` / `always_strong` strategy rows give per-prompt 0/1
correctness, measured latency, cost and tokens. The other strategies are routers, not models, and
are left out. This is the only source with measured latency.

Cost is recorded in CNY; it is converted at CNY_PER_USD (the 2025 average, about 7.2 CNY per USD).
Prompt texts are not in the data (the ids point to the public datasets); GSM8K test prompts are
filled in from openai/grade-school-math (`gsm8k:test:<n>` is row n of test.jsonl) and get the shared
`gsm8k_test:<n>` id; the other prompts have no text (prompt is missing).
"""

from __future__ import annotations

import pandas as pd

from .registry import Files, register

CNY_PER_USD = 7.2
PRED = "routerbench-mini/v5_test_predictions.csv.gz"
GSM8K_TEST = "benchmarks/gsm8k/test.jsonl"


@register(
    "routerbench_mini",
    kind="scores",
    files=(PRED, GSM8K_TEST),
    label_source="routerbench_mini",
    description="RouterBench-Mini V5: 800 prompts x 2 Qwen3.5 models, 0/1, latency, cost, tokens.",
)
def routerbench_mini(files: Files) -> pd.DataFrame:
    cols = [
        "canonical_id", "dataset", "strategy", "selected_model", "correct", "cost",
        "latency_ms", "prompt_tokens", "completion_tokens",
    ]  # fmt: skip
    raw = pd.read_csv(files.path(PRED), usecols=cols)
    raw = raw[raw["strategy"].isin(["always_cheap", "always_strong"])]
    gsm8k = pd.read_json(files.path(GSM8K_TEST), lines=True)["question"]
    parts = raw["canonical_id"].str.split(":")
    is_gsm8k = (raw["dataset"] == "gsm8k") & (parts.str[2] == "test")
    n = pd.to_numeric(parts.str[3].where(is_gsm8k), errors="coerce")
    prompt_id = ("routerbench_mini:" + raw["canonical_id"]).where(
        ~is_gsm8k, "gsm8k_test:" + n.astype("Int64").astype(str)
    )
    return pd.DataFrame(
        {
            "prompt_id": prompt_id,
            "subset": raw["dataset"],
            "prompt": n.map(lambda i: gsm8k.iloc[int(i)] if pd.notna(i) else None),
            "task_label": raw["dataset"],
            "model": raw["selected_model"],
            "score": raw["correct"].astype("float64"),
            "cost_usd": raw["cost"] / CNY_PER_USD,
            "prompt_tokens": raw["prompt_tokens"],
            "completion_tokens": raw["completion_tokens"],
            "latency_ms": raw["latency_ms"],
        }
    )
