"""AlpacaEval (tatsu-lab/alpaca_eval): 805 instructions, per-prompt judge preferences per model.

AlpacaEval 2.0 (`alpaca_eval2`): judge weighted_alpaca_eval_gpt4_turbo, baseline gpt4_1106_preview;
`preference` in [1, 2] and score = preference - 1 = P(model beats GPT-4-Turbo).
AlpacaEval 1.0 (`alpaca_eval1`): judge alpaca_eval_gpt4, baseline text_davinci_003; preference 2
win, 1 loss, 1.5 tie, so score = preference - 1 in {0, 0.5, 1}; 0 or NaN marks an unparseable
judgment and the row is dropped. The two scores mean different things (different baselines): keep
them apart.

MANIFEST notes honoured here:
- judge attacks are excluded: `NullModel` (a constant adversarial answer) and `gpt4_gamed`;
- the AE2 baseline judged against itself (`gpt4_1106_preview`, always 0.5) carries no information
  and is dropped;
- `_concise` / `_verbose` results are the same model prompted for a shorter or longer answer: they
  stay separate models named "<canonical> (concise)" / "(verbose)" (data/models.yaml `variants`);
- the AE1 `falcon-7b-instruct/` annotation file is mislabelled: it holds falcon-40b-instruct outputs
  (a duplicate of the `falcon-40b-instruct/` file upstream), so it is dropped; AE1 has no falcon-7b.
`output_chars` is the judged output's length (`output_2_chars`).
"""

from __future__ import annotations

import pandas as pd

from .registry import Files, register

EVAL_SET = "alpaca_eval/eval_set.jsonl"
JUDGE_ATTACKS = frozenset({"NullModel", "gpt4_gamed"})
AE2_BASELINE = "gpt4_1106_preview"
AE1_MISLABELLED = frozenset({"falcon-7b-instruct"})


def eval_set(files: Files) -> pd.DataFrame:
    es = pd.read_json(files.path(EVAL_SET), lines=True)
    return pd.DataFrame(
        {
            "idx": es["idx"],
            "prompt_id": "alpaca_eval:" + es["idx"].astype(str),
            "prompt": es["instruction"],
            "subset": es["dataset"],
            "task_label": es["dataset"],
        }
    )


def _long(files: Files, path: str, dropped: frozenset[str]) -> pd.DataFrame:
    """The judged rows of `path`, less the judge attacks and the `dropped` result directories."""
    prefs = pd.read_csv(
        files.path(path), usecols=["idx", "results_dir", "preference", "output_2_chars"]
    )
    prefs = prefs[~prefs["results_dir"].isin(JUDGE_ATTACKS | dropped)]
    prefs = prefs[prefs["preference"].between(1.0, 2.0)]  # drops 0 / NaN (invalid judgments)
    prefs = prefs.assign(
        score=prefs["preference"] - 1.0,
        output_chars=prefs["output_2_chars"].astype("float64"),
        model=prefs["results_dir"],
    )
    return eval_set(files).merge(prefs, on="idx", how="inner")


def _register_preferences(name: str, path: str, dropped: frozenset[str], description: str) -> None:
    @register(
        name,
        kind="scores",
        files=(EVAL_SET, path),
        label_source="alpaca_eval",
        description=description,
    )
    def load(files: Files) -> pd.DataFrame:
        return _long(files, path, dropped)


_register_preferences(
    "alpaca_eval2",
    "alpaca_eval/derived/ae2_weighted_gpt4turbo_preferences_long.csv.gz",
    frozenset({AE2_BASELINE}),
    "AlpacaEval 2.0: P(model beats GPT-4-Turbo) per prompt, ~55 models.",
)
_register_preferences(
    "alpaca_eval1",
    "alpaca_eval/derived/ae1_gpt4_preferences_long.csv.gz",
    AE1_MISLABELLED,
    "AlpacaEval 1.0: win (1) / tie (0.5) / loss (0) vs text-davinci-003, 53 models.",
)
