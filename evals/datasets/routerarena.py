"""RouterArena sub_10 (RouteWorks/RouterArena, Apache-2.0): 809 prompts from 36 source datasets
(78 dataset/category names), answered by claude-3-haiku and gemini-2.0-flash, with the evaluation
score (0/1, or a fraction for a few metrics), the USD inference cost and the token usage of each
call.

The prompt is the formatted question that was sent (`question`, identical to `router_data_10.json`'s
`prompt_formatted`). METEOR scores (NarrativeQA) can fall slightly below 0 (one row: -0.033); scores
are clipped to [0, 1]. The task label is the `global_index` without its trailing number
(e.g. `MMLUPro_law`, `WMT19-de-en`, `AIME`).
"""

from __future__ import annotations

import pandas as pd

from .registry import Files, register

RESULTS = "routerarena/cached_results/"


def category(global_index: pd.Series) -> pd.Series:
    return global_index.str.replace(r"_\d+$", "", regex=True)


def prompts(files: Files) -> pd.DataFrame:
    """The 809 sub_10 prompts: `prompt_id`, `prompt`, `task_label`."""
    rd = pd.read_json(files.path("routerarena/router_data_10.json"))
    return pd.DataFrame(
        {
            "prompt_id": "routerarena:" + rd["global index"],
            "prompt": rd["prompt_formatted"],
            "task_label": category(rd["global index"]),
        }
    )


@register(
    "routerarena",
    kind="scores",
    files=(RESULTS + "*", "routerarena/router_data_10.json"),
    label_source="routerarena",
    description="RouterArena sub_10: 809 prompts x 2 models, score + USD cost + tokens.",
)
def routerarena(files: Files) -> pd.DataFrame:
    frames = []
    for _, path in files.glob(RESULTS):
        raw = pd.read_json(path, lines=True)
        ev = pd.json_normalize(raw["evaluation_result"].tolist())
        usage = pd.json_normalize(raw["token_usage"].tolist())
        frames.append(
            pd.DataFrame(
                {
                    "prompt_id": "routerarena:" + raw["global_index"],
                    "model": raw["llm_selected"],
                    "prompt_sent": raw["question"],
                    "score": ev["score"].astype("float64").clip(0.0, 1.0),
                    "cost_usd": ev["inference_cost"].astype("float64"),
                    "prompt_tokens": usage["input_tokens"].astype("float64"),
                    "completion_tokens": usage["output_tokens"].astype("float64"),
                    "output_chars": raw["generated_answer"].fillna("").str.len().astype("float64"),
                    "success": raw["success"].astype(bool),
                }
            )
        )
    long = pd.concat(frames, ignore_index=True)
    long = long[long["success"] & long["score"].notna()]
    long = long.merge(prompts(files), on="prompt_id", how="left")
    long["prompt"] = long["prompt"].fillna(long["prompt_sent"])
    return long.assign(subset=long["task_label"])
