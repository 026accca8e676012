"""LLMRouter (ulab-uiuc/LLMRouter, MIT): 6,108 benchmark queries over 14 tasks, 9 NVIDIA-NIM models.

Scores come from `dcrouter_preprocessed/{train,test}.json` (question -> {model: score in [0, 1]});
the task name of each question comes from `query_data/default_query_{train,test}.jsonl`, joined on
the exact question text within the same split (all questions match). A question that appears more
than once is one prompt with its scores averaged. The per-call costs and tokens
(`default_routing_*`) are not in the shared data, so cost and token columns are empty here.
"""

from __future__ import annotations

import gzip
import json

import pandas as pd

from .registry import Files, register
from .routerdc import text_id

D = "llmrouter/"
SPLITS = {
    "train": (
        D + "dcrouter_preprocessed/train.json.gz",
        D + "query_data/default_query_train.jsonl.gz",
    ),
    "test": (D + "dcrouter_preprocessed/test.json", D + "query_data/default_query_test.jsonl"),
}


@register(
    "llmrouter",
    kind="scores",
    files=tuple(p for pair in SPLITS.values() for p in pair),
    label_source="llmrouter",
    description="LLMRouter: 14 tasks, 9 NIM models (7B-70B), task-metric scores in [0, 1].",
)
def llmrouter(files: Files) -> pd.DataFrame:
    rows = []
    for split, (scores_path, query_path) in SPLITS.items():
        q = pd.read_json(files.path(query_path), lines=True).drop_duplicates("query")
        task_of = dict(zip(q["query"], q["task_name"], strict=True))
        path = files.path(scores_path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            items = json.load(fh)
        for item in items:
            question = item["question"]
            for model, score in item["scores"].items():
                rows.append((question, task_of.get(question), split, model, float(score)))
    long = pd.DataFrame(rows, columns=["prompt", "task_label", "split", "model", "score"])
    long["prompt_id"] = "llmrouter:" + long["prompt"].map(text_id)
    long = long.groupby(["prompt_id", "model"], as_index=False, sort=False).agg(
        prompt=("prompt", "first"), task_label=("task_label", "first"), score=("score", "mean")
    )
    return long.assign(subset=long["task_label"])
