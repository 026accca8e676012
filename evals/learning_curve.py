"""How many labelled pairs the router needs to learn a task-dependent preference from traffic.

Synthetic traffic with a known answer: on real user prompts of two tasks (Auto-J's scenario-labelled
prompts: code_generation and chat), model X wins coding and model Y wins chat, each comparison
going to the task's winner with probability `p_win` (label noise). The records are written in the
gateway's export format (`synthetic_records`), so they go through the same `preferences()` table
and `fit_traffic` as real traffic. For each number of labelled pairs n and seed, the traffic term is
fitted on n pairs drawn from the *training* prompts, and the held-out prompts (the task-label split
the router's classifier never trained on) are routed; the measure is the share of each task's
held-out prompts routed to its winner.

The default pair is the local catalog's two models with the cheap one (`local/tiny-a`, profiled
from Mixtral) winning coding and the dear one (`local/tiny-b`, profiled from GPT-4-1106) winning
chat: the base router's predictions say the opposite for coding, so the traffic has to overturn
them there.

Where the curve levels off. The term reads a prompt's task through the router's task
probabilities (inferroute.learned.preference_features), and the pairs are drawn from the
training prompts, which the task classifier was fitted on: there it names the right task for
almost every prompt, on the held-out prompts it does not (`task_recognition`). A held-out coding
prompt the classifier takes for open QA or rewriting gets little of the coding shift, and the
base router sends it to the dear model; so the coding share levels off near the classifier's
held-out coding accuracy however many pairs there are, and chat stays high because the base router
already prefers chat's winner. A validation split of the training prompts cannot see this: from
200 pairs on, every setting of the term tried (`pref_l2`, `pref_logit_scale`, `pref_embedding`)
routes all but a few of them right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from evals import datasets as D
from evals import our_router
from evals.datasets.autoj import AUTOJ_DATASETS
from evals.datasets.traffic_log import preferences

WINNERS: Mapping[str, str] = {"code_generation": "local/tiny-a", "chat": "local/tiny-b"}
START = datetime(2026, 11, 1, tzinfo=UTC)


def task_prompts(
    tasks: Sequence[str] = tuple(WINNERS), split_seed: int = 0, max_chars: int = 4000
) -> pd.DataFrame:
    """Auto-J's real prompts of `tasks`: prompt, task, split ("train" or "held_out"), by the same
    text-hash split as the router's task labels (evals.experiments.labels_split), so held-out
    prompts were never seen by a router trained with that split seed."""
    labels = D.load_task_labels(AUTOJ_DATASETS, mapped_only=True)
    s = D.split_by_prompt(labels, seed=split_seed, group="text")
    labels = labels.assign(
        split=labels["prompt_id"].map(s).where(lambda x: x == "train", "held_out")
    )
    out = labels[labels["task"].isin(list(tasks)) & (labels["prompt"].str.len() <= max_chars)]
    return out[["prompt_id", "prompt", "task", "split"]].reset_index(drop=True)


def synthetic_records(
    prompts: pd.DataFrame,
    winners: Mapping[str, str],
    n: int,
    *,
    p_win: float = 0.8,
    seed: int = 0,
    source: str = "verdict",
    judge: str = "synthetic-judge",
    start: datetime = START,
) -> list[dict[str, Any]]:
    """`n` side-by-side pair records in the export format (kind "pair"), one label each: a task
    drawn uniformly from `winners`, a prompt of that task, sides in random order, the task's winner
    winning with probability `p_win`, one record a minute from `start`."""
    rng = np.random.default_rng(seed)
    tasks = sorted(winners)
    models = sorted(set(winners.values()))
    by_task = {t: prompts[prompts["task"] == t]["prompt"].tolist() for t in tasks}
    out = []
    for i in range(n):
        task = tasks[int(rng.integers(len(tasks)))]
        text = by_task[task][int(rng.integers(len(by_task[task])))]
        best = winners[task]
        other = [m for m in models if m != best]
        loser = other[int(rng.integers(len(other)))] if other else best
        won = best if rng.random() < p_win else loser
        a, b = (best, loser) if rng.random() < 0.5 else (loser, best)
        when = (start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        label = {"winner": "a" if won == a else "b", "created_at": when}
        out.append(
            {
                "kind": "pair",
                "id": f"pair_syn{seed}_{i:06d}",
                "created_at": when,
                "request_id": f"req_syn{seed}_{i:06d}",
                "key_id": "key_synthetic",
                "messages": [{"role": "user", "content": text}],
                "task": task,
                "routing": None,
                "model_a": a,
                "answer_a": f"(answer of {a})",
                "model_b": b,
                "answer_b": f"(answer of {b})",
                "votes": [{**label, "source": "human"}] if source == "vote" else [],
                "verdicts": [{**label, "judge": judge, "detail": {}}]
                if source == "verdict"
                else [],
            }
        )
    return out


def routed_to_winner(
    router: Any,
    prompts: pd.DataFrame,
    winners: Mapping[str, str],
    cards: Mapping[str, Any] | None = None,
    optimize: str = "quality",
) -> dict[str, float]:
    """Per task: the share of `prompts` the router sends to the task's winner (pool = winners)."""
    pool = sorted(set(winners.values()))
    out = {}
    for task, g in prompts.groupby("task", sort=True):
        picks = [
            router.route([{"role": "user", "content": p}], pool, optimize, cards=dict(cards or {}))
            for p in g["prompt"]
        ]
        out[str(task)] = float(np.mean([d.model == winners[str(task)] for d in picks]))
    return out


def learning_curve(
    router: Any,
    prompts: pd.DataFrame,
    winners: Mapping[str, str] = WINNERS,
    sizes: Sequence[int] = (0, 10, 20, 50, 100, 200, 500),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    cards: Mapping[str, Any] | None = None,
    p_win: float = 0.8,
    optimize: str = "quality",
    max_eval: int = 0,
) -> pd.DataFrame:
    """One row per (n, seed, task): `routed_to_winner` on the held-out prompts after fitting the
    traffic term on n synthetic pairs over the training prompts (n = 0: the base router)."""
    train = prompts[prompts["split"] == "train"]
    held = prompts[prompts["split"] != "train"]
    if max_eval:
        held = held.sample(frac=1.0, random_state=0).groupby("task").head(max_eval)
    rows = []
    base = routed_to_winner(router, held, winners, cards, optimize) if 0 in sizes else {}
    for seed in seeds:
        for n in sizes:
            if n > 0:
                recs = synthetic_records(train, winners, n, p_win=p_win, seed=seed)
                fitted = our_router.fit_traffic(router, preferences(recs), cards)
                shares = routed_to_winner(fitted, held, winners, cards, optimize)
            else:  # the base router: the same for every seed
                shares = base
            for task, share in shares.items():
                rows.append({"n_pairs": n, "seed": seed, "task": task, "to_winner": share})
    return pd.DataFrame(rows)


def task_recognition(
    router: Any, prompts: pd.DataFrame, winners: Mapping[str, str] = WINNERS
) -> pd.DataFrame:
    """How the router's task classifier sees `prompts`, by split and task: `prompts`, `top_task`
    (the share whose most likely task is their own) and `above_rivals` (the share whose own task
    is more likely than every other task of `winners`): what the traffic term can tell apart."""
    tasks = sorted(winners)
    col = {t: our_router.TASK_NAMES.index(t) for t in tasks}
    probs = np.asarray(router.task_proba(prompts["prompt"].tolist()))
    own = np.array([probs[i, col[t]] for i, t in enumerate(prompts["task"])])
    rival = np.array(
        [max(probs[i, col[r]] for r in tasks if r != t) for i, t in enumerate(prompts["task"])]
    )
    frame = pd.DataFrame(
        {
            "split": prompts["split"].to_numpy(),
            "task": prompts["task"].to_numpy(),
            "top": own >= probs.max(1),
            "above": own > rival,
        }
    )
    g = frame.groupby(["split", "task"], sort=True)
    return pd.DataFrame(
        {"prompts": g.size(), "top_task": g["top"].mean(), "above_rivals": g["above"].mean()}
    )


def curve_table(curve: pd.DataFrame) -> pd.DataFrame:
    """n_pairs x task: mean (min) share routed to the winner over seeds, as text cells."""
    g = curve.groupby(["n_pairs", "task"])["to_winner"]
    cell = g.mean().map("{:.2f}".format) + " (" + g.min().map("{:.2f}".format) + ")"
    return cell.unstack("task")


def pairs_needed(curve: pd.DataFrame, target: float = 0.9) -> int | None:
    """The smallest n from which every larger n routes, averaged over seeds, at least `target` of
    every task's held-out prompts to its winner (None: no n in the curve does)."""
    worst = curve.groupby(["n_pairs", "task"])["to_winner"].mean().groupby("n_pairs").min()
    ok = worst >= target
    for n in sorted(worst.index):
        if ok.loc[n:].all():
            return int(n)
    return None
