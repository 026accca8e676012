"""Auto-J's scenario-labelled real user prompts (GAIR-NLP/auto-j): three label datasets.

- `autoj_scenarios`: the scenario-classifier training data (instruction, and its input when given).
- `autoj_pairwise`: the prompts of the human-judged pairwise test data.
- `autoj_critiques`: the Chatbot Arena queries of the GPT-4 critique training data.

The label is Auto-J's scenario (58 of them, plus `post_summarization` and `others` in the pairwise
data), mapped to InferRoute's tasks by the `autoj` block of data/task_map.yaml; `default` rows are
unlabelled (task None). The same prompt appears in more than one file: the prompt_id is a hash of
the normalised text ("autoj:<hash>"), so `load_task_labels()` lists it once, and each loader keeps
one row per normalised text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from .registry import Files, register
from .routerdc import text_id

AUTOJ_DATASETS: tuple[str, ...] = ("autoj_scenarios", "autoj_pairwise", "autoj_critiques")
SCENARIOS = "autoj/scenario_train.jsonl"
PAIRWISE = "autoj/pairwise_human.jsonl.gz"
CRITIQUES = "autoj/gpt4_critiques.jsonl.gz"


def normalise(text: str) -> str:
    """The dedupe key of a prompt: lower case, whitespace collapsed, ends trimmed."""
    return re.sub(r"\s+", " ", text).strip().lower()


def autoj_id(text: str) -> str:
    return f"autoj:{text_id(normalise(text))}"


def labelled_prompts(prompts: Sequence[str], scenarios: Sequence[str]) -> pd.DataFrame:
    """One row per normalised prompt (first occurrence kept); empty prompts dropped."""
    df = pd.DataFrame({"prompt": [p.strip() for p in prompts], "task_label": list(scenarios)})
    df = df[df["prompt"].str.len() > 0]
    df.insert(0, "prompt_id", [autoj_id(p) for p in df["prompt"]])
    return df.drop_duplicates("prompt_id").reset_index(drop=True)


@register(
    "autoj_scenarios",
    kind="labels",
    files=(SCENARIOS,),
    label_source="autoj",
    description="Auto-J scenario-classifier train data: 2,377 real prompts, 58 scenarios, default.",
)
def autoj_scenarios(files: Files) -> pd.DataFrame:
    d = pd.read_json(files.path(SCENARIOS), lines=True, dtype=False)
    given = d["input"].fillna("").astype(str).str.strip()
    prompts = [
        f"{ins}\n\n{inp}" if inp else str(ins)
        for ins, inp in zip(d["instruction"].astype(str), given, strict=True)
    ]
    return labelled_prompts(prompts, d["category"].astype(str).tolist())


def _register_scenario_file(name: str, path: str, prompt: str, description: str) -> None:
    """A labels dataset of one Auto-J file: its `prompt` column, labelled by its `scenario`."""

    @register(name, kind="labels", files=(path,), label_source="autoj", description=description)
    def load(files: Files) -> pd.DataFrame:
        d = pd.read_json(files.path(path), lines=True, dtype=False)
        return labelled_prompts(d[prompt].astype(str).tolist(), d["scenario"].astype(str).tolist())


_register_scenario_file(
    "autoj_pairwise",
    PAIRWISE,
    "prompt",
    "Auto-J pairwise human-judged test prompts: 1,283 rows, 60 scenarios.",
)
_register_scenario_file(
    "autoj_critiques",
    CRITIQUES,
    "query",
    "Auto-J GPT-4 critique data: 923 Chatbot Arena queries, 57 scenarios + default.",
)
