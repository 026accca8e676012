"""Small real data and a tiny trained router shared by the inferroute tests (trained once)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
if "INFERBASE_DATA_DIR" not in os.environ and SHARED.is_dir():
    os.environ["INFERBASE_DATA_DIR"] = str(SHARED)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

GPT4 = "GPT-4-1106-preview"
MIXTRAL = "Mixtral-8x7B-Instruct"
MISTRAL7B = "Mistral-7B-Instruct (RouterBench)"
POOL = [GPT4, MIXTRAL, MISTRAL7B]
MESSAGES = [
    [
        {
            "role": "user",
            "content": "Write a Python function that returns the n-th Fibonacci number.",
        }
    ],
    [
        {
            "role": "user",
            "content": "Natalia sold clips to 48 friends in April, and half as many in "
            "May. How many clips did she sell altogether in April and May?",
        }
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Write a haiku about autumn rain."},
        {"role": "assistant", "content": "Rain taps the window..."},
        {"role": "user", "content": "Now make it about snow."},
    ],
]

# Two tasks MiniLM tells apart easily: the task encoder's tests fine-tune on these (inferroute and
# evals)
TRANSLATE = [
    "Translate 'good morning' into German.",
    "How do you say 'where is the station' in Italian?",
    "Translate this sentence to Spanish: the cat sleeps on the sofa.",
    "Please translate 'I love you' into Korean.",
    "What is 'thank you very much' in Portuguese?",
    "Translate to Dutch: the meeting is moved to Monday.",
    "Can you translate 'happy birthday' into Russian?",
    "Translate into French: I would like a cup of coffee.",
    "Render 'see you tomorrow' in Japanese, please.",
    "Translate the word 'library' to Swedish.",
]
CODE = [
    "Write a Python function that reverses a linked list.",
    "Implement binary search in JavaScript.",
    "Write a SQL query that returns the ten newest orders.",
    "Fix this Python code: for i in range(10) print(i)",
    "Write a bash script that counts the lines of every .txt file.",
    "Implement a stack class in Java with push and pop.",
    "Write a Rust function that parses a CSV line into fields.",
    "Write a C program that prints the first 20 primes.",
    "Refactor this function to use a list comprehension in Python.",
    "Write a Go HTTP handler that returns JSON.",
]


@pytest.fixture(scope="session")
def small_data() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """RouterBench (11 models, costs) + RouteLLM GSM8K, task labels; and a by-text split."""
    if (
        not os.environ.get("INFERBASE_DATA_DIR")
        or not Path(os.environ["INFERBASE_DATA_DIR"]).is_dir()
    ):
        pytest.skip("no shared data directory (set INFERBASE_DATA_DIR)")
    from evals import datasets as D

    scores = pd.concat([D.load("routerbench_zs"), D.load("routellm_gsm8k")], ignore_index=True)
    labels = D.load_task_labels()
    split = D.split_by_prompt(scores, seed=0, group="text")
    return scores, labels, split


@pytest.fixture(scope="session")
def tiny_router(small_data):
    import inferroute
    from inferroute.config import TINY

    scores, labels, split = small_data
    train = scores[scores["prompt_id"].map(split) == "train"]
    return inferroute.train(train, labels, TINY)


@pytest.fixture(scope="session")
def prior_router():
    from inferroute import ModelCard, PriorRouter

    cards = {
        GPT4: ModelCard(GPT4, 10.0, 30.0, ttft_ms=600, tpot_ms=30, quality_prior=0.9),
        MIXTRAL: ModelCard(MIXTRAL, 0.6, 0.6, ttft_ms=300, tpot_ms=12, quality_prior=0.7),
        MISTRAL7B: ModelCard(MISTRAL7B, 0.2, 0.2, ttft_ms=200, tpot_ms=8, quality_prior=0.5),
    }
    return PriorRouter(cards)


# An example of each registered router kind (a fixture name): the contract and persistence tests
# run over `inferroute.registry.ROUTERS`, and a kind registered without an example here fails them.
EXAMPLE_ROUTERS = {"prior": "prior_router", "learned": "tiny_router"}


def _registered_kinds() -> list[str]:
    from inferroute.registry import ROUTERS

    return sorted(ROUTERS)


@pytest.fixture(params=_registered_kinds())
def any_router(request):
    """One instance of every registered router kind (the contract test runs on each)."""
    fixture = EXAMPLE_ROUTERS.get(request.param)
    if fixture is None:
        pytest.fail(f"router kind {request.param!r} has no example in EXAMPLE_ROUTERS")
    router = request.getfixturevalue(fixture)
    assert router.name == request.param
    return router
