"""The traffic summary, its order check and the results.md sections, on hand-made decisions."""

from __future__ import annotations

import pandas as pd

from evals import experiments, report, traffic


def _decisions(cost_mode_model: str) -> pd.DataFrame:
    price = {"cheap": (0.001, 0.6, 300.0), "dear": (0.01, 0.9, 900.0)}
    picks = {"quality": "dear", "balanced": "cheap", "cost": cost_mode_model, "latency": "cheap"}
    rows = []
    for prompt in range(2):
        for mode, model in picks.items():
            cost, quality, latency = price[model]
            rows.append(
                {"prompt": prompt, "pool": "pair", "mode": mode, "model": model, "task": "chat",
                 "complexity": "simple", "confidence": 0.9, "low_confidence": False,
                 "cost": cost, "latency_ms": latency, "quality": quality}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_mode_order_flags_a_cost_mode_that_spends_more_than_balanced() -> None:
    good = traffic.mode_summary(_decisions("cheap"))
    assert traffic.mode_order(good) == []
    bad = traffic.mode_order(traffic.mode_summary(_decisions("dear")))
    assert any("spend cost" in p for p in bad) and any("quality cost" in p for p in bad)
    shares = traffic.share_table(good)
    assert shares.loc[("pair", "quality"), "dear"] == 1.0
    assert shares.loc[("pair", "cost"), "cheap"] == 1.0


def test_results_sections_for_real_prompts_traffic_and_seeds() -> None:
    df = _decisions("cheap")
    summary = traffic.mode_summary(df)
    payload = {
        "real_prompts": {
            "complexity": {"spearman": 0.55, "n": 300, "spearman.flask": 0.6, "n.flask": 250},
            "everyday": {"n": 40, "simple_called_simple": 0.81, "complex_called_complex": 0.75,
                         "task_accuracy": 0.4},
            "lengths": {"n": 1000, "models": 20, "router.median_abs_log_ratio": 0.47,
                        "router.within_2x": 0.64, "constant 300.median_abs_log_ratio": 0.65,
                        "constant 300.within_2x": 0.53},
        },
        "traffic": {
            "markdown": traffic.markdown(summary, {"task mix": traffic.mix(df, "task")}, 2),
            "order_violations": traffic.mode_order(summary),
            "low_confidence_share": 0.1,
        },
    }  # fmt: skip
    text = "\n".join(report.render_real(payload))
    assert "Spearman 0.550 on 300 prompts (flask 0.600 (n=250))" in text
    assert "| cost | 1.000 | 0.600 | 300 | 100% | 0% |" in text.replace("0% | 100%", "100% | 0%")
    assert "all hold." in text
    spread = experiments.seed_spread(
        {"0": {"mmlu.apgr": 0.6, "mmlu.apgr_lo": 0.5, "mmlu.apgr_hi": 0.7},
         "1": {"mmlu.apgr": 0.7, "mmlu.apgr_lo": 0.6, "mmlu.apgr_hi": 0.8}}
    )  # fmt: skip
    seeds = "\n".join(report.render_seeds({"seeds": [0, 1], "split": "test", "spread": spread}))
    assert "| mmlu.apgr | 0.650 | 0.600 | 0.700 | [0.550, 0.750] |" in seeds
    evaluated = {
        "router_uri": "models:/inferroute@champion",
        "results": {"inferroute": {"mmlu": {"apgr": 0.64, "cpt50": 30.0}}},
        "real_prompts": {
            "complexity": {"spearman": 0.41},
            "task_real": {"task_real.accuracy": 0.7},
        },
    }
    spread = experiments.seed_spread(
        {"0": {"mmlu.apgr": 0.6, "complexity.spearman": 0.5, "task_real.accuracy": 0.65},
         "1": {"mmlu.apgr": 0.7, "complexity.spearman": 0.55, "task_real.accuracy": 0.75}}
    )  # fmt: skip
    payload = {"seeds": [0, 1], "split": "test", "spread": spread}
    seeds = "\n".join(report.render_seeds(payload, evaluated))
    assert "| mmlu.apgr | 0.650 | 0.600 | 0.700 | — | 0.640 (inside) |" in seeds
    assert "| complexity.spearman | 0.525 | 0.500 | 0.550 | — | 0.410 (OUTSIDE) |" in seeds
    assert "| task_real.accuracy | 0.700 | 0.650 | 0.750 | — | 0.700 (inside) |" in seeds
    assert "inside every seed range: no." in seeds
