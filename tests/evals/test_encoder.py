"""The fine-tuned MiniLM task classifier of the research harness (evals.encoder)."""

from __future__ import annotations

import numpy as np
import pytest

from evals import encoder


def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 5))
    p = encoder.softmax(logits / 2.5)
    y = np.array([rng.choice(5, p=row) for row in p])
    assert encoder.fit_temperature(logits, y) == pytest.approx(2.5, rel=0.1)
    # over-confident logits are softened (T > 1), under-confident ones sharpened (T < 1)
    assert encoder.fit_temperature(logits * 3, y) > 1 > encoder.fit_temperature(logits / 3, y)


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


def test_finetuned_encoder_learns_tasks_and_says_how_sure_it_is():
    cfg = encoder.EncoderConfig(epochs=4, batch_size=8, lr=1e-4, head_lr=5e-3, threads=1)
    train_t = TRANSLATE[:7] + CODE[:7]
    train_y = ["translation"] * 7 + ["code_generation"] * 7
    calib = (TRANSLATE[7:8] + CODE[7:8], ["translation", "code_generation"])
    model = encoder.finetune(
        train_t, train_y, [1.0] * len(train_t), ["translation", "code_generation"], cfg, calib
    )
    held = TRANSLATE[8:] + CODE[8:]
    proba = model.predict_proba(held)
    assert proba.shape == (4, 2) and np.allclose(proba.sum(1), 1.0)
    assert list(proba.argmax(1)) == [0, 0, 1, 1]  # the held-out prompts' tasks
    assert model.temperature > 0


def test_evaluate_scores_held_out_real_prompts_only():
    import pandas as pd

    from evals import our_router

    rows = [(t, "translation", "autoj_scenarios") for t in TRANSLATE]
    rows += [(t, "code_generation", "autoj_scenarios") for t in CODE]
    rows += [(t + " Thanks.", "code_generation", "routellm_gsm8k") for t in CODE[:4]]
    labels = pd.DataFrame(rows, columns=["prompt", "task", "dataset"])
    cfg = encoder.EncoderConfig(epochs=4, batch_size=8, lr=1e-4, head_lr=5e-3, threads=1)
    out = encoder.evaluate(labels, our_router.router_config({}), seeds=[0], n_boot=0, cfg=cfg)
    held = out["held_out"]
    assert held["n_test"] == 4  # 20% of the 20 real prompts; the benchmark rows only train
    (pred,) = out["predictions"]
    assert set(pred.truth) <= {"translation", "code_generation"} and len(pred.pred) == 4
    assert held["accuracy"]["mean"] >= 0.75, pred  # two tasks that MiniLM tells apart easily
    assert 0.0 < pred.conf.min() <= pred.conf.max() <= 1.0
