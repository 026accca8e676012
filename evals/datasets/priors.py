"""Per-model aggregates for models with few or no per-prompt rows: leaderboards and price tables.

`load_leaderboards()` gives one row per (board, model): `score` in [0, 1] (win rate against the
board's baseline, so scores are comparable within a board only), the length-controlled win rate
where the board has one, and the average output length (`avg_length`: characters for AlpacaEval,
tokens for Arena-Hard: see `length_unit`). Judge attacks (NullModel, gpt4_gamed) are dropped.

`load_output_lengths()` gives per-prompt answer lengths for 227 AlpacaEval models (most without
scores here) and three Arena-Hard models (with token counts).

`load_prices()` gives USD per million input / output tokens from RouterArena's `cost.json` and
LLMRouter's `default_llm.json` (NVIDIA NIM prices), one row per (source, model).
Model names pass through data/models.yaml like the score tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import source
from .alpaca_eval import JUDGE_ATTACKS
from .registry import recode
from .schema import canonical_model

AE = "alpaca_eval/leaderboards/"
BOARDS = {
    "alpaca_eval2": (AE + "data_AlpacaEval_2__weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"),
    "alpaca_eval1": (AE + "data_AlpacaEval__alpaca_eval_gpt4_leaderboard.csv"),
}
ARENA_HARD = "arena-hard/leaderboard/arena_hard_leaderboard_20240731.csv"


def load_leaderboards(data_dir: str | Path | None = None) -> pd.DataFrame:
    """Columns: board, model, score, lc_score, avg_length, length_unit, baseline."""
    root = Path(data_dir) if data_dir is not None else None
    frames = []
    for board, path in BOARDS.items():
        df = pd.read_csv(source.resolve(path, root), index_col=0)
        df = df[~df.index.isin(JUDGE_ATTACKS)]
        frames.append(
            pd.DataFrame(
                {
                    "board": board,
                    "model": df.index.astype(str),
                    "score": df["win_rate"] / 100.0,
                    "lc_score": df["length_controlled_winrate"] / 100.0,
                    "avg_length": df["avg_length"].astype("float64"),
                    "length_unit": "chars",
                    "baseline": "gpt4_1106_preview"
                    if board == "alpaca_eval2"
                    else "text_davinci_003",
                }
            )
        )
    ah = pd.read_csv(source.resolve(ARENA_HARD, root))
    frames.append(
        pd.DataFrame(
            {
                "board": "arena_hard",
                "model": ah["model"].astype(str),
                "score": ah["score"] / 100.0,
                "lc_score": float("nan"),
                "avg_length": ah["avg_tokens"].astype("float64"),
                "length_unit": "tokens",
                "baseline": "gpt-4-0314",
            }
        )
    )
    out = pd.concat(frames, ignore_index=True)
    out["model"] = recode(out["model"], canonical_model)
    return out


def load_prices(data_dir: str | Path | None = None) -> pd.DataFrame:
    """Columns: source, model, input_usd_per_mtok, output_usd_per_mtok."""
    root = Path(data_dir) if data_dir is not None else None
    rows = []
    with source.resolve("routerarena/model_cost/cost.json", root).open(encoding="utf-8") as fh:
        for model, p in json.load(fh).items():
            rows.append(
                ("routerarena", model, p["input_token_price_per_million"],
                 p["output_token_price_per_million"])
            )  # fmt: skip
    path = source.resolve("llmrouter/llm_candidates/default_llm.json", root)
    with path.open(encoding="utf-8") as fh:
        for model, p in json.load(fh).items():
            rows.append(("llmrouter", model, p["input_price"], p["output_price"]))
    out = pd.DataFrame(
        rows, columns=["source", "model", "input_usd_per_mtok", "output_usd_per_mtok"]
    )
    out["model"] = recode(out["model"], canonical_model)
    return out.astype({"input_usd_per_mtok": "float64", "output_usd_per_mtok": "float64"})


ARENA_ANSWERS = "arena-hard/arena-hard-v0.1/model_answer/"
AE_LENGTHS = "alpaca_eval/derived/output_lengths_long.csv.gz"


def load_output_lengths(data_dir: str | Path | None = None) -> pd.DataFrame:
    """Per-prompt answer lengths of models with or without scores (cost and latency proxies).

    Columns: source, prompt_id, prompt, model, output_chars, output_tokens. AlpacaEval: 227 models x
    805 instructions (characters; model = the results folder, judge-attack entries dropped);
    Arena-Hard v0.1: gpt-4-0314, gpt-4-0613, gpt-3.5-turbo-0125 x 500 prompts (characters and
    `token_len` tokens).
    """
    root = Path(data_dir) if data_dir is not None else None
    lengths = pd.read_csv(
        source.resolve(AE_LENGTHS, root), usecols=["idx", "results_dir", "output_chars"]
    )
    lengths = lengths[~lengths["results_dir"].isin(JUDGE_ATTACKS)]
    es = pd.read_json(source.resolve("alpaca_eval/eval_set.jsonl", root), lines=True)
    ae = lengths.merge(es[["idx", "instruction"]], on="idx", how="left")
    frames = [
        pd.DataFrame(
            {
                "source": "alpaca_eval",
                "prompt_id": "alpaca_eval:" + ae["idx"].astype(str),
                "prompt": ae["instruction"],
                "model": ae["results_dir"],
                "output_chars": ae["output_chars"].astype("float64"),
                "output_tokens": float("nan"),
            }
        )
    ]
    questions = pd.read_json(
        source.resolve("arena-hard/arena-hard-v0.1/question.jsonl", root), lines=True
    )
    prompt_of = dict(
        zip(
            questions["question_id"], questions["turns"].map(lambda t: t[0]["content"]), strict=True
        )
    )
    for name in source.manifest()["files"]:
        if not name.startswith(ARENA_ANSWERS):
            continue
        answers = pd.read_json(source.resolve(name, root), lines=True)
        turn = answers["choices"].map(lambda c: c[0]["turns"][0])
        frames.append(
            pd.DataFrame(
                {
                    "source": "arena_hard",
                    "prompt_id": "arena_hard:" + answers["question_id"],
                    "prompt": answers["question_id"].map(prompt_of),
                    "model": answers["model_id"],
                    "output_chars": turn.map(lambda t: float(len(t["content"]))),
                    "output_tokens": turn.map(lambda t: float(t["token_len"])),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out["model"] = recode(out["model"], canonical_model)
    return out
