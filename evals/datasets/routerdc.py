"""RouterDC's data (shuhao02/RouterDC, no LICENSE file: internal research use only).

`routerbench_zs`: a RouterBench (withmartian/routerbench, 0-shot) subset re-split by RouterDC: ARC-
Challenge, Winogrande and MBPP, 11 models, 0/1 correctness and the USD cost of each call.
RouterBench stores some prompts on several rows, each with a different subset of models filled in;
rows are melted, empty cells dropped and repeated (prompt, model) cells averaged. The prompt is
RouterBench's (a list of strings, joined with blank lines; few-shot exemplars included as
RouterBench sent them).

`routerdc_model7`: RouterDC's 7 open ~7B models on 10 benchmarks; scores in [0, 1] (fractional on
GSM8K and a few others: the mean over sampled generations). Train and test files of one benchmark
are one prompt set; a question repeated in it is averaged.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import re
from pathlib import Path

import pandas as pd

from .registry import Files, register

ZS = "routerdc/routerbench_zs/"
ZS_FILES = tuple(
    f"{ZS}{b}_{s}.csv.gz" for b in ("arc_challenge", "mbpp", "winograde") for s in ("train", "test")
)
M7 = "routerdc/split2_model7/"


def text_id(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _join_prompt(raw: str) -> str:
    try:
        parts = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw
    return "\n\n".join(parts) if isinstance(parts, list) else str(parts)


@register(
    "routerbench_zs",
    kind="scores",
    files=ZS_FILES,
    label_source="origin",
    description="RouterBench 0-shot subset (ARC-C, Winogrande, MBPP): 11 models, 0/1 + USD cost.",
)
def routerbench_zs(files: Files) -> pd.DataFrame:
    wide = pd.concat([pd.read_csv(files.path(f)) for f in ZS_FILES], ignore_index=True)
    models = [c.removesuffix("|total_cost") for c in wide.columns if c.endswith("|total_cost")]
    frames = []
    for m in models:
        part = pd.DataFrame(
            {
                "sample_id": wide["sample_id"],
                "raw_prompt": wide["prompt"],
                "eval_name": wide["eval_name"],
                "model": m,
                "score": wide[m],
                "cost_usd": wide[f"{m}|total_cost"],
                "output_chars": wide[f"{m}|model_response"].str.len(),
            }
        )
        frames.append(part[part["score"].notna()])
    long = pd.concat(frames, ignore_index=True)
    long = long.groupby(["sample_id", "model"], as_index=False, sort=False).agg(
        raw_prompt=("raw_prompt", "first"),
        eval_name=("eval_name", "first"),
        score=("score", "mean"),
        cost_usd=("cost_usd", "mean"),
        output_chars=("output_chars", "mean"),
    )
    long["prompt"] = long["raw_prompt"].map(_join_prompt)
    long["prompt_id"] = "routerbench:" + long["sample_id"]
    return long.assign(subset=long["eval_name"], task_label=long["eval_name"])


def _benchmark(name: str) -> str:
    stem = Path(name).name.split(".")[0]
    return re.sub(r"[-_](train|test)$", "", stem)


@register(
    "routerdc_model7",
    kind="scores",
    files=(M7 + "*",),
    label_source="origin",
    description="RouterDC 7 open 7B models x 10 benchmarks (MMLU, GSM8K, ARC, C-Eval, CMMLU, ...).",
)
def routerdc_model7(files: Files) -> pd.DataFrame:
    rows = []
    for name, path in files.glob(M7):
        bench = _benchmark(name)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            items = json.load(fh)
        for item in items:
            pid = f"routerdc:{bench}:{text_id(item['question'])}"
            for model, score in item["scores"].items():
                rows.append((pid, bench, item["question"], model, float(score)))
    long = pd.DataFrame(rows, columns=["prompt_id", "subset", "prompt", "model", "score"])
    long = long.groupby(["prompt_id", "model"], as_index=False, sort=False).agg(
        subset=("subset", "first"), prompt=("prompt", "first"), score=("score", "mean")
    )
    return long.assign(task_label=long["subset"])
