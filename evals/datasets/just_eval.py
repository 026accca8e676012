"""just-eval (Re-Align/just-eval, MIT): real prompts with per-model answers and GPT-4 tags.

`just_eval_outputs`: 14 models' answers to ~1,000 prompts (LIMA, self-instruct, helpful-base,
OpenAssistant, Koala, Vicuna, MT-Bench and two red-team sets), with the answer's characters and,
in the three files that count them (gpt-4-0613, Mistral-7B-Instruct-v0.1, zephyr-7b-beta), its
`num_tokens` (`output_tokens`; missing elsewhere). `subset` is the prompt's source dataset.

`just_eval_tags`: GPT-4-0314's tags on 371 of those prompts: `task` (info-seek, math, coding,
procedure, writing, role-play) as `task_label` and `difficulty` (easy / medium / hard, spread over
[0, 1]).

The MT-Bench prompts among them (`subset == "mt"`) are MT-Bench, an evaluation: the loaders keep
them (so the table is the source's) and every training use drops them (`TRAIN_EXCLUDE_SUBSETS`).
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pandas as pd

from .registry import Files, register

OUTPUTS = "just_eval/outputs/"
TAGS = "just_eval/tags_gpt4.jsonl"
LEVELS = ("easy", "medium", "hard")
TRAIN_EXCLUDE_SUBSETS = frozenset({"mt"})
ANY_OUTPUT = OUTPUTS + "gpt-4-0613.jsonl.gz"  # any one output file: every file has every prompt


@register(
    "just_eval_outputs",
    kind="lengths",
    files=(OUTPUTS + "*.jsonl.gz",),
    description="just-eval: answer lengths (tokens) of 14 models on ~1,000 real prompts.",
)
def just_eval_outputs(files: Files) -> pd.DataFrame:
    frames = []
    for name, path in files.glob(OUTPUTS):
        raw = pd.read_json(path, lines=True)
        frames.append(
            pd.DataFrame(
                {
                    "prompt_id": "just_eval:" + raw["id"].astype(str),
                    "subset": raw["dataset"],
                    "prompt": raw["instruction"],
                    "model": PurePosixPath(name).name.removesuffix(".jsonl.gz"),
                    "output_chars": raw["output"].astype(str).str.len(),
                    "output_tokens": pd.to_numeric(
                        raw.get("num_tokens", pd.Series(float("nan"), index=raw.index))
                    ).astype("float64"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@register(
    "just_eval_tags",
    kind="difficulty",
    files=(TAGS, ANY_OUTPUT),
    description="just-eval: GPT-4 task and difficulty (easy/medium/hard) tags on 371 prompts.",
)
def just_eval_tags(files: Files) -> pd.DataFrame:
    tags = pd.read_json(files.path(TAGS), lines=True)
    tags = tags[tags["difficulty"].isin(LEVELS)]
    source = pd.read_json(files.path(ANY_OUTPUT), lines=True).set_index("id")["dataset"]
    return pd.DataFrame(
        {
            "prompt_id": "just_eval:" + tags["id"].astype(str),
            "subset": tags["id"].map(source),
            "prompt": tags["prompt"],
            "task_label": tags["task"],
            "domain": tags["topic"],
            "difficulty_label": tags["difficulty"],
            "difficulty": tags["difficulty"].map({n: i / 2 for i, n in enumerate(LEVELS)}),
        }
    )
