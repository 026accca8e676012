"""FLASK (kaistAI/FLASK, no LICENSE file: research and evaluation only).

`flask`: 1,737 prompts with a five-level difficulty annotated by the FLASK authors (simple lifestyle
-> advanced lifestyle -> formal education -> major level -> expert level knowledge), their domains,
skills and source benchmark (`subset`). `difficulty` spreads the five levels evenly over [0, 1]; the
two rows marked "-1" (no level) are dropped.

`flask_outputs`: 15 models' answers to the FLASK prompts (`model_outputs/<model>.jsonl.gz`, no
judgments): answer length in characters per model and prompt (`question_id` = FLASK `idx`).
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pandas as pd

from .registry import Files, register

PROMPTS = "flask/flask_evaluation.jsonl.gz"
OUTPUTS = "flask/model_outputs/"
LEVELS = (
    "simple lifestyle knowledge",
    "advanced lifestyle knowledge",
    "formal education knowledge",
    "major level knowledge",
    "expert level knowledge",
)


def _prompts(files: Files) -> pd.DataFrame:
    raw = pd.read_json(files.path(PROMPTS), lines=True)
    return raw.assign(prompt_id="flask:" + raw["idx"].astype(str))


@register(
    "flask",
    kind="difficulty",
    files=(PROMPTS,),
    description="FLASK: 1,735 prompts with a five-level difficulty, domains and skills.",
)
def flask(files: Files) -> pd.DataFrame:
    raw = _prompts(files)
    raw = raw[raw["difficulty"].isin(LEVELS)]
    level = raw["difficulty"].map({name: i for i, name in enumerate(LEVELS)})
    return pd.DataFrame(
        {
            "prompt_id": raw["prompt_id"],
            "subset": raw["task"],
            "prompt": raw["instruction"],
            "task_label": raw["domain"].map(lambda d: ",".join(d)),
            "domain": raw["domain"].map(lambda d: ",".join(d)),
            "skills": raw["skill"].map(lambda s: ",".join(s)),
            "difficulty_label": raw["difficulty"],
            "difficulty": level / (len(LEVELS) - 1),
        }
    )


@register(
    "flask_outputs",
    kind="lengths",
    files=(PROMPTS, OUTPUTS + "*.jsonl.gz"),
    description="FLASK: answer lengths (characters) of 15 models on the FLASK prompts.",
)
def flask_outputs(files: Files) -> pd.DataFrame:
    prompts = _prompts(files).set_index("idx")
    frames = []
    for name, path in files.glob(OUTPUTS):
        answers = pd.read_json(path, lines=True)
        answers = answers[answers["question_id"].isin(prompts.index)]
        q = prompts.loc[answers["question_id"]]
        frames.append(
            pd.DataFrame(
                {
                    "prompt_id": q["prompt_id"].to_numpy(),
                    "subset": q["task"].to_numpy(),
                    "prompt": q["instruction"].to_numpy(),
                    "model": PurePosixPath(name).name.removesuffix(".jsonl.gz"),
                    "output_chars": answers["text"].astype(str).str.len().to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
