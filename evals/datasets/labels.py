"""Prompt sets that carry a task-type label but no per-model scores.

Each is registered with kind="labels" and a `label_source` key into data/task_map.yaml. The score
datasets' own labels (dataset of origin, MT-Bench category, LLMRouter task, RouterArena category,
...) are added by `load_task_labels()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from . import source
from .registry import Files, register
from .routellm import mt_bench_questions
from .routerdc import text_id


def _labelled(name: str, ids: Iterable[object], prompts: Any, labels: Any) -> pd.DataFrame:
    """A label set's table: prompt_id "<name>:<id>", the prompt, its label (a column or one)."""
    return pd.DataFrame(
        {"prompt_id": [f"{name}:{i}" for i in ids], "prompt": prompts, "task_label": labels}
    )


@register(
    "mt_bench_questions",
    kind="labels",
    files=("mt-bench/question.jsonl",),
    label_source="mt_bench",
    description="MT-Bench 80 questions, 8 categories (first turn).",
)
def mt_bench_labels(files: Files) -> pd.DataFrame:
    return mt_bench_questions(files.path("mt-bench/question.jsonl"))


@register(
    "vicuna_bench",
    kind="labels",
    files=("vicuna-bench/question.jsonl",),
    label_source="vicuna_bench",
    description="Vicuna bench 80 questions, 9 categories.",
)
def vicuna_bench(files: Files) -> pd.DataFrame:
    q = pd.read_json(files.path("vicuna-bench/question.jsonl"), lines=True)
    return _labelled("vicuna_bench", q["question_id"], q["turns"].str[0], q["category"])


@register(
    "wizardlm_testset",
    kind="labels",
    files=("task_labels/wizardlm_testset/WizardLM_testset.jsonl",),
    label_source="wizardlm",
    description="WizardLM test set: 218 instructions, 29 skills (CC BY-NC 4.0).",
)
def wizardlm(files: Files) -> pd.DataFrame:
    w = pd.read_json(files.path("task_labels/wizardlm_testset/WizardLM_testset.jsonl"), lines=True)
    return _labelled("wizardlm", w["idx"], w["Instruction"], w["Skill"])


def _with_input(instruction: str, instances: list[dict[str, str]]) -> str:
    given = (instances[0].get("input") or "").strip() if instances else ""
    return f"{instruction}\n\n{given}" if given else instruction


@register(
    "self_instruct",
    kind="labels",
    files=("task_labels/self_instruct_user_oriented/user_oriented_instructions.jsonl",),
    label_source="self_instruct",
    description="Self-instruct user-oriented: 252 instructions, 71 motivating apps.",
)
def self_instruct(files: Files) -> pd.DataFrame:
    path = files.path("task_labels/self_instruct_user_oriented/user_oriented_instructions.jsonl")
    s = pd.read_json(path, lines=True)
    # The instruction followed by its first instance's input, as a user would send it.
    prompts = [_with_input(i, x) for i, x in zip(s["instruction"], s["instances"], strict=True)]
    return _labelled("self_instruct", s["id"], prompts, s["motivation_app"])


@register(
    "arena_hard",
    kind="labels",
    files=("arena-hard/arena-hard-v0.1/question.jsonl",),
    label_source="arena_hard",
    description="Arena-Hard-Auto v0.1: 500 prompts, 250 topic clusters (topics, not task types).",
)
def arena_hard(files: Files) -> pd.DataFrame:
    q = pd.read_json(files.path("arena-hard/arena-hard-v0.1/question.jsonl"), lines=True)
    return _labelled(
        "arena_hard", q["question_id"], q["turns"].map(lambda t: t[0]["content"]), q["cluster"]
    )


@register(
    "gsm8k_train",
    kind="labels",
    files=("benchmarks/gsm8k/train.jsonl.gz",),
    label_source="origin",
    description="GSM8K train questions (7,473), dataset of origin label.",
)
def gsm8k_train(files: Files) -> pd.DataFrame:
    q = pd.read_json(files.path("benchmarks/gsm8k/train.jsonl.gz"), lines=True)
    return _labelled("gsm8k_train", range(len(q)), q["question"], "gsm8k")


@register(
    "humaneval",
    kind="labels",
    files=("benchmarks/humaneval/HumanEval.jsonl.gz",),
    label_source="origin",
    description="HumanEval 164 problems, dataset of origin label.",
)
def humaneval(files: Files) -> pd.DataFrame:
    q = pd.read_json(files.path("benchmarks/humaneval/HumanEval.jsonl.gz"), lines=True)
    return _labelled("humaneval", q["task_id"], q["prompt"], "humaneval")


DOLLY = "databricks/databricks-dolly-15k"


@register(
    "dolly",
    kind="labels",
    files=(),
    label_source="dolly",
    hub=True,
    description="Dolly-15k (HF hub only, not in the shared data): 8 task categories.",
)
def dolly(files: Files) -> pd.DataFrame:
    ds = source.load_hub_dataset(DOLLY, split="train")
    df = ds.to_pandas() if hasattr(ds, "to_pandas") else pd.DataFrame(ds)
    prompt = [
        f"{ins}\n\n{ctx}" if isinstance(ctx, str) and ctx.strip() else ins
        for ins, ctx in zip(df["instruction"], df["context"], strict=True)
    ]
    return _labelled("dolly", map(text_id, prompt), prompt, df["category"]).drop_duplicates(
        "prompt_id"
    )


def wizardlm_difficulty(data_dir: str | Path | None = None) -> pd.Series:
    """WizardLM test-set difficulty (1-10, as annotated) by prompt_id: a complexity label."""
    root = Path(data_dir) if data_dir is not None else None
    w = pd.read_json(
        source.resolve("task_labels/wizardlm_testset/WizardLM_testset.jsonl", root), lines=True
    )
    return pd.Series(
        w["Difficulty"].astype("float64").to_numpy(),
        index=pd.Index("wizardlm:" + w["idx"].astype(str), name="prompt_id"),
        name="difficulty",
    )
