"""RouteLLM's evaluation data (lm-sys/RouteLLM): MMLU, GSM8K, MT-Bench, and MT-Bench through the
commercial routers Martian and Unify. Pair: gpt-4-1106-preview (strong) vs Mixtral-8x7B-Instruct.

Contaminated prompts (near-duplicates of RouteLLM's router-training data,
`contaminated_prompts.jsonl`) are dropped exactly as RouteLLM's `evals/benchmarks.py` drops them:
MMLU and GSM8K rows whose prompt equals an `eval_prompt`; MT-Bench questions whose first or second
turn does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .registry import Files, register

PAIR = ("gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1")


def _contaminated(path: Path) -> set[str]:
    return set(pd.read_json(path, lines=True)["eval_prompt"])


def _melt_bool_columns(wide: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    long = wide.melt(id_vars=ids, value_vars=list(PAIR), var_name="model", value_name="score")
    long["score"] = long["score"].astype("float64")
    return long


@register(
    "routellm_mmlu",
    kind="scores",
    files=("routellm/mmlu/responses/*.csv", "routellm/mmlu/contaminated_prompts.jsonl"),
    label_source="origin",
    description="MMLU (57 subjects), GPT-4-1106 vs Mixtral correctness (0/1).",
)
def routellm_mmlu(files: Files) -> pd.DataFrame:
    frames = []
    for name, path in files.glob("routellm/mmlu/responses/"):
        subject = Path(name).stem.removeprefix("mmlu_")
        df = pd.read_csv(path)
        df["prompt_id"] = [f"routellm_mmlu:{subject}:{i}" for i in range(len(df))]
        df["subset"] = subject
        frames.append(df)
    wide = pd.concat(frames, ignore_index=True)
    wide = wide[
        ~wide["prompt"].isin(_contaminated(files.path("routellm/mmlu/contaminated_prompts.jsonl")))
    ]
    long = _melt_bool_columns(wide, ["prompt_id", "subset", "prompt"])
    return long.assign(task_label="mmlu")


@register(
    "routellm_gsm8k",
    kind="scores",
    files=("routellm/gsm8k/gsm8k_responses.csv.gz", "routellm/gsm8k/contaminated_prompts.jsonl"),
    label_source="origin",
    description="GSM8K test (1,319), GPT-4-1106 vs Mixtral final-answer correctness (0/1).",
)
def routellm_gsm8k(files: Files) -> pd.DataFrame:
    wide = pd.read_csv(files.path("routellm/gsm8k/gsm8k_responses.csv.gz"))
    # Rows are the GSM8K test set in order (checked against openai/grade-school-math test.jsonl).
    wide["prompt_id"] = [f"gsm8k_test:{i}" for i in range(len(wide))]
    contaminated = _contaminated(files.path("routellm/gsm8k/contaminated_prompts.jsonl"))
    wide = wide[~wide["prompt"].isin(contaminated)]
    long = _melt_bool_columns(wide, ["prompt_id", "prompt"])
    chars = {m: wide.set_index("prompt_id")[f"{m}_response"].str.len() for m in PAIR}
    long["output_chars"] = [
        chars[m].get(p, np.nan) for p, m in zip(long.prompt_id, long.model, strict=True)
    ]
    return long.assign(task_label="gsm8k", subset="test")


def mt_bench_questions(path: Path, contaminated: set[str] | None = None) -> pd.DataFrame:
    """MT-Bench questions with `prompt_id` `mt_bench:<question_id>`; contaminated ones dropped."""
    q = pd.read_json(path, lines=True)
    if contaminated is not None:
        hit = q["turns"].str[0].isin(contaminated) | q["turns"].str[1].isin(contaminated)
        q = q[~hit]
    return pd.DataFrame(
        {
            "question_id": q["question_id"],
            "prompt_id": "mt_bench:" + q["question_id"].astype(str),
            # Routers route on the first turn (RouteLLM: "Only use first turn for routing").
            "prompt": q["turns"].str[0],
            "task_label": q["category"],
            "subset": q["category"],
        }
    )


def _judged(questions: pd.DataFrame, judgments: pd.DataFrame) -> pd.DataFrame:
    """Mean GPT-4 1-10 score over both turns per (question, model), mapped to 0-1 by (s - 1) / 9.

    Judge failures (score -1) are left out of the mean. RouteLLM's benchmark averages the two turns'
    1-10 scores in the same way; (s - 1) / 9 is affine, so APGR and CPT are unchanged by it.
    """
    valid = judgments[judgments["score"].between(1, 10)]
    mean = valid.groupby(["question_id", "model"], as_index=False)["score"].mean()
    mean["score"] = (mean["score"] - 1.0) / 9.0
    return questions.merge(mean, on="question_id", how="inner")


MT_BENCH_QUESTIONS = "routellm/mt_bench/question.jsonl"
MT_BENCH_CONTAMINATED = "routellm/mt_bench/contaminated_prompts.jsonl"
MT_BENCH_FILES = (MT_BENCH_QUESTIONS, MT_BENCH_CONTAMINATED)


def _mt_bench_scores(files: Files, judgments: str) -> pd.DataFrame:
    """The uncontaminated MT-Bench questions with the `judgments` file's scores (see `_judged`)."""
    contaminated = _contaminated(files.path(MT_BENCH_CONTAMINATED))
    questions = mt_bench_questions(files.path(MT_BENCH_QUESTIONS), contaminated)
    judged = pd.read_json(files.path(judgments), lines=True)
    return _judged(questions, judged[["question_id", "model", "score", "turn"]])


@register(
    "routellm_mt_bench",
    kind="scores",
    files=("routellm/mt_bench/judgements.jsonl.gz", *MT_BENCH_FILES),
    label_source="mt_bench",
    description="MT-Bench (80 q x 2 turns), GPT-4 single grading 1-10 -> (s-1)/9, mean of turns.",
)
def routellm_mt_bench(files: Files) -> pd.DataFrame:
    return _mt_bench_scores(files, "routellm/mt_bench/judgements.jsonl.gz")


COMMERCIAL = "routellm/benchmarks_mt_bench_vs_commercial/"


@register(
    "mt_bench_commercial",
    kind="anchor",
    files=(COMMERCIAL + "*", *MT_BENCH_FILES),
    label_source="mt_bench",
    description="MT-Bench answered through the Martian and Unify routers (published anchors).",
)
def mt_bench_commercial(files: Files) -> pd.DataFrame:
    out = _mt_bench_scores(files, COMMERCIAL + "gpt-4_single.jsonl.gz")
    chars = {}
    for router in ("martian", "unify"):
        with files.path(f"{COMMERCIAL}{router}.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                turns = row["choices"][0]["turns"]
                chars[(row["question_id"], router)] = float(sum(len(t) for t in turns))
    out["output_chars"] = [
        chars.get(k, np.nan) for k in zip(out.question_id, out.model, strict=True)
    ]
    return out


def unify_routed_models(files_root: Path | None = None) -> pd.DataFrame:
    """Which model Unify routed each MT-Bench question to (`question_id`, `routed_model`)."""
    from . import source

    path = source.resolve(COMMERCIAL + "unify.jsonl", files_root)
    df = pd.read_json(path, lines=True)
    return pd.DataFrame(
        {
            "prompt_id": "mt_bench:" + df["question_id"].astype(str),
            "routed_model": df["model_id"],
        }
    )
