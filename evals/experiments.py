"""The tracked experiments behind the CLI and the notebooks: train, evaluate (MLflow runs)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from evals import anchors, embeddings, figures, our_router, promote, tracking
from evals import datasets as D
from evals import metrics as M
from evals.baselines import LEARNED, Baseline, get_baseline
from evals.harness import BenchData, BenchmarkSpec, EvalResult, reference_results, run_eval
from evals.suite import SuiteConfig, load_suite, train_frame

logger = logging.getLogger(__name__)

TRAIN_EXPERIMENT, EVAL_EXPERIMENT = "inferroute-train", "inferroute-eval"


def suite_score(result: EvalResult) -> float:
    """The promotion number: mean over benchmarks of APGR (pair), AIQ or top-1 quality (multi)."""
    vals = [br.metrics[primary_key(br)] for br in result.benchmarks.values()]
    return M.suite_score(vals)


def primary_key(br: Any) -> str:
    """A benchmark result's headline metric: APGR (pair), AIQ or top-1 quality (multi)."""
    return "apgr" if br.kind == "pair" else ("aiq" if "aiq" in br.metrics else "best_quality")


def _suite_params(cfg: SuiteConfig) -> dict[str, Any]:
    return {
        "suite.benchmarks": ",".join(cfg.names()),
        "suite.train_datasets": ",".join(cfg.train_datasets),
        "suite.max_train_prompts_per_dataset": cfg.max_train_prompts_per_dataset,
        "suite.split_seed": cfg.split_seed,
    }


def train_params(cfg: SuiteConfig, router_overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a training run logs as parameters: the suite's and the router config's (flat)."""
    router_cfg = our_router.router_config(router_overrides)
    flat = {f"router.{k}": v for k, v in router_cfg.to_flat_dict().items()}
    return {**_suite_params(cfg), **flat}


def labels_split(cfg: SuiteConfig, split: str) -> pd.DataFrame:
    """Task-labelled prompts of one split. The train split leaves out every prompt of a benchmark
    held out of training entirely (MT-Bench: its category labels would otherwise teach the task
    classifier, an input of the quality model, about the very prompts the benchmark judges)."""
    labels = D.load_task_labels(mapped_only=True)
    s = D.split_by_prompt(labels, seed=cfg.split_seed, group="text")
    out = labels[labels["prompt_id"].map(s) == split]
    if split == "train" and cfg.held_out():
        held = pd.concat([D.load(name) for name in sorted(cfg.held_out())], ignore_index=True)
        out = out[
            ~out["prompt_id"].isin(set(held["prompt_id"]))
            & ~out["prompt"].isin(set(held["prompt"]))
        ]
    return out.reset_index(drop=True)


def real_prompts(cfg: SuiteConfig, split: str) -> dict[str, pd.DataFrame]:
    """The real-prompt tables of one split (by prompt text, as the score table): `difficulty`
    (FLASK levels, just-eval tags), `answers` (per-model answer lengths) and `unlabelled`
    (ShareGPT first turns, for the task classifier's self-training); just-eval's MT-Bench
    prompts are never in them (see evals.datasets.load_difficulty)."""
    out = {}
    for key, df in (("difficulty", D.load_difficulty()), ("answers", D.load_answer_lengths())):
        s = D.split_by_prompt(df, seed=cfg.split_seed, group="text")
        out[key] = df[df["prompt_id"].map(s) == split].reset_index(drop=True)
    out["unlabelled"] = unlabelled_prompts(cfg, split)
    return out


def unlabelled_prompts(cfg: SuiteConfig, split: str) -> pd.DataFrame:
    """ShareGPT's first turns in `split` (by prompt text): unlabelled real prompts for the task
    classifier's self-training; the other splits stay unseen for the traffic checks."""
    df = D.load("sharegpt")
    s = D.split_by_prompt(df, seed=cfg.split_seed, group="text")
    return df[df["prompt_id"].map(s) == split].reset_index(drop=True)


def fit_baselines(
    train_df: pd.DataFrame, names: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Baseline]:
    out = {}
    for name in tqdm(list(names), desc="baselines", disable=None):
        t0 = time.perf_counter()
        out[name] = get_baseline(name, **dict((params or {}).get(name, {}))).fit(train_df)
        logger.info("fitted %s in %.1fs", name, time.perf_counter() - t0)
    return out


def route_p50(
    router: Any, prompts: Sequence[str], pool: Sequence[str], n: int = 30, repeat: int = 3
) -> float:
    """p50 of `router.route` wall time on single prompts (what serving pays per request).

    Each of `n` prompts is routed `repeat` times after one warm-up call and keeps its fastest
    time (timeit's rule: the slower repeats measure other processes on the machine, not the
    router), so the promotion gate's speed check compares routers and not the machine's load."""
    messages = [[{"role": "user", "content": p}] for p in list(prompts)[:n]]
    if messages:
        router.route(messages[0], list(pool))  # lazy set-up (sessions, caches) is not per request
    times = []
    for m in messages:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            router.route(m, list(pool))
            best = min(best, time.perf_counter() - t0)
        times.append(best * 1000.0)
    return M.routing_p50_ms(times)


def validate_router(
    router: Any, df: pd.DataFrame, specs: Sequence[BenchmarkSpec], name: str = "inferroute"
) -> tuple[EvalResult, dict[str, float]]:
    res = run_eval(our_router.QualityView(router), df, specs, name=name)
    first = next(iter(res.benchmarks.values()), None)
    p50 = res.routing_ms.get("p50", float("nan"))
    if first is not None and hasattr(router, "route"):
        spec = specs[0]
        prompts = df.loc[df["dataset"].isin(spec.datasets), "prompt"].drop_duplicates()
        pool = [m for m in (spec.strong, spec.weak) if m] or list(spec.models or [])
        pool = pool or BenchData.build(df, spec).models  # multi without a named pool: its models
        p50 = route_p50(router, list(prompts), pool)
    return res, {"suite_score": suite_score(res), "routing_p50_ms": p50}


def train_router(
    cfg: SuiteConfig,
    router_overrides: Mapping[str, Any] | None = None,
    df: pd.DataFrame | None = None,
) -> Any:
    """The router `python -m evals train` trains (no validation, logging or registry): the suite's
    train split, its task labels and the real-prompt tables of the train split."""
    df = load_suite(cfg)[0] if df is None else df
    return our_router.train(
        train_frame(df, cfg),
        labels_split(cfg, "train"),
        router_overrides,
        real_prompts(cfg, "train"),
    )


def train(
    cfg: SuiteConfig,
    router_overrides: Mapping[str, Any] | None = None,
    *,
    register: bool = True,
    promotion: promote.PromotionConfig | None = None,
    traffic: str | None = None,
    router: Any = None,
) -> dict[str, Any]:
    """Train InferRoute on the train split, judge it on the validation split, log, register.

    `traffic`: a version of the `traffic` dataset ("latest" for the newest export): the router's
    preference term is fitted on its older records (evals.datasets.traffic_log) and the router is
    judged on its newest ones too (`traffic_win_rate`, `traffic_apgr`; evals.traffic_eval).
    `router`: an already trained base router to start from instead of training one (the traffic
    term is still fitted; quick loops and notebooks)."""
    df, versions = load_suite(cfg)
    params = train_params(cfg, router_overrides)
    if router is not None and hasattr(router, "config"):  # log the config it was trained with
        params.update({f"router.{k}": v for k, v in router.config.to_flat_dict().items()})
    prefs = None
    tags = {"evals.kind": "train"}
    if traffic is not None:
        from evals.datasets import traffic_log

        version = traffic_log.latest_version() if traffic == "latest" else traffic
        prefs = traffic_log.load_preferences(version)
        versions["traffic"] = version
        params["traffic.version"] = version
        params["traffic.train_labels"] = int((prefs["split"] == "train").sum())
        params["traffic.test_labels"] = int((prefs["split"] == "test").sum())
    with tracking.run(
        TRAIN_EXPERIMENT, "train", params, dataset_versions=versions, tags=tags
    ) as active:
        t0, c0 = time.perf_counter(), time.process_time()
        if router is None:
            router = train_router(cfg, router_overrides, df)
        gate_metrics: dict[str, float] = {}
        if prefs is not None:
            from evals import traffic_eval

            cards = traffic_eval.pool_cards()
            router = our_router.fit_traffic(router, prefs[prefs["split"] == "train"], cards)
            held = prefs[prefs["split"] == "test"]
            measured = traffic_eval.evaluate_traffic(router, held, cards)
            gate_metrics.update({k: v for k, v in measured.items() if np.isfinite(v)})
        timings = {"train": (time.perf_counter() - t0, time.process_time() - c0)}
        timings.update(getattr(router, "train_timings", {}))  # per stage (tqdm shows them live)
        t0, c0 = time.perf_counter(), time.process_time()
        res, public = validate_router(router, df, cfg.on_split("val"))
        gate_metrics = {**public, **gate_metrics}
        timings["validate"] = (time.perf_counter() - t0, time.process_time() - c0)
        seconds = {
            f"{kind}.{name.replace(' ', '_')}": v[i]
            for name, v in timings.items()
            for i, kind in enumerate(("seconds", "cpu_seconds"))
        }
        tracking.log_metrics(
            {
                **res.flat_metrics(),
                **gate_metrics,
                "train_seconds": timings["train"][0],
                **{f"time.{k}": v for k, v in seconds.items()},
            },
        )
        out: dict[str, Any] = {
            "run_id": active.info.run_id,
            **gate_metrics,
            "seconds (wall, CPU)": {k: [round(x, 1) for x in v] for k, v in timings.items()},
        }
        if register:
            extra = {"traffic_version": versions["traffic"]} if prefs is not None else {}
            out["version"] = promote.register_router(
                router,
                gate_metrics,
                promotion or promote.PromotionConfig(),
                dataset_version=",".join(f"{k}={v}" for k, v in sorted(versions.items())),
                run_id=active.info.run_id,
                **extra,
            )
    return out


def evaluate(
    cfg: SuiteConfig,
    *,
    baselines: Sequence[str] = LEARNED,
    baseline_params: Mapping[str, Mapping[str, Any]] | None = None,
    router_uri: str | None = None,
    split: str = "test",
    log: bool = True,
    embedder: str = "router",
    traffic: str | None = None,
) -> dict[str, Any]:
    """Every baseline, the references and (if available) our router on held-out prompts.

    `embedder` for the baselines: "router" (the evaluated router's own static table, so every
    method sees the same features; falls back to "static" without a router), "static" (InferRoute's
    distilled MiniLM token table for this suite's prompts), "static-input" (quick, weaker) or
    "minilm" (contextual sentence embeddings, disk-cached; slow on a shared 2-core machine).
    """
    df, versions = load_suite(cfg)
    specs = cfg.on_split(split)
    train_df = train_frame(df, cfg)
    router = None
    if router_uri is None and our_router.available() and promote.alias_version("champion"):
        router_uri = f"models:/{promote.PromotionConfig().model_name}@champion"
    if router_uri and our_router.available():
        router = our_router.load(router_uri)
    if embedder == "router" and router is not None and hasattr(router, "embedder"):
        embeddings.use_encoder(router.embedder)  # the same features as the router under test
    elif embedder.startswith("static") or embedder == "router":
        source = "input" if embedder == "static-input" else "distill"  # input: quick, weaker
        embeddings.use_static(df["prompt"].astype(str).unique().tolist(), source=source)
    else:
        embeddings.use_contextual()
    results: dict[str, EvalResult] = dict(reference_results(df, specs))
    for name, model in fit_baselines(train_df, baselines, baseline_params).items():
        results[name] = run_eval(model, df, specs, name=name)
    clf: dict[str, Any] = {}
    clf_cv: dict[str, Any] = {}
    real: dict[str, Any] = {}
    if router is not None:
        results["inferroute"], _ = validate_router(router, df, specs)
        clf = our_router.classifier_metrics(router, labels_split(cfg, split))
        clf_cv = our_router.classifier_cv(router, D.load_task_labels(mapped_only=True))
        real = real_prompt_metrics(router, cfg, split)
    own: dict[str, float] = {}
    if router is not None and traffic is not None:
        version, own = own_traffic_metrics(router, traffic)
        versions = {**versions, "traffic": version}
    add_aiq_intervals(results)
    payload = {
        "split": split,
        "router_uri": router_uri,
        "baseline_embedder": embedder,
        "dataset_versions": versions,
        "benchmarks": [dataclasses.asdict(s) for s in specs],
        "results": {
            n: {b: br.metrics for b, br in r.benchmarks.items()} | {"routing_ms": r.routing_ms}
            for n, r in results.items()
        },
        "anchors": {"routellm_paper": anchors.paper_anchors(), "commercial": _commercial()},
        "classifier": {k: v for k, v in clf.items() if k != "confusion"},
        "classifier_cv": clf_cv,
        "own_traffic": own,
        **real,
    }
    if log:
        _log_eval(cfg, results, payload, versions, clf, baseline_params)
    return payload


def own_traffic_metrics(router: Any, traffic: str = "latest") -> tuple[str, dict[str, float]]:
    """(version, metrics) of `router` on the newest split of a `traffic` dataset version:
    `traffic_win_rate`, `traffic_apgr` and the number of pairs (evals.traffic_eval)."""
    from evals import traffic_eval
    from evals.datasets import traffic_log

    version = traffic_log.latest_version() if traffic == "latest" else traffic
    prefs = traffic_log.load_preferences(version)
    held = prefs[prefs["split"] == "test"]
    return version, traffic_eval.evaluate_traffic(router, held, traffic_eval.pool_cards())


def real_prompt_metrics(
    router: Any, cfg: SuiteConfig, split: str, traffic_prompts: int = 600
) -> dict[str, Any]:
    """`real_prompts` (complexity vs held-out difficulty labels, the everyday prompts fixture,
    expected output tokens vs held-out answer lengths) and `traffic` (ShareGPT decisions per pool
    and optimize mode) of one router, for the results payload."""
    from evals import realprompts, traffic

    held = real_prompts(cfg, split)
    task_real = realprompts.task_metrics(router, held_out_real_labels(cfg, split))
    complexity = realprompts.complexity_metrics(router, held["difficulty"])
    everyday = realprompts.everyday_metrics(router)
    lengths = realprompts.length_metrics(
        router, held["answers"], {"constant 300": realprompts.constant_lengths(300.0)}
    )
    return {
        "real_prompts": {
            "complexity": complexity,
            "everyday": {k: v for k, v in everyday.items() if k != "rows"},
            "lengths": lengths,
            "task_real": task_real,
        },
        "traffic": traffic.traffic_report(router, traffic_prompts),
    }


def evaluate_seeds(
    cfg: SuiteConfig,
    seeds: Sequence[int],
    *,
    router_overrides: Mapping[str, Any] | None = None,
    split: str = "test",
    log: bool = True,
    n_boot: int = 1000,
    save_dir: str | Path | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Train the router once per training seed (`seed` override; the data split stays fixed) and
    judge each on the same held-out prompts: per seed, every benchmark's primary metric (APGR for
    pairs, AIQ or top-1 quality for multi) with a 95% bootstrap interval over the judged prompts,
    the task classifier on the held-out real user prompts (`task_real.*`: accuracy, macro-F1, ECE
    on the split's Auto-J prompts, with bootstrap intervals) and the other real-prompt metrics
    (complexity Spearman with a bootstrap interval, everyday simple share and task accuracy,
    output-length error); across seeds, each number's mean, min and max (`spread`).
    `save_dir`: each seed's router is saved to `<save_dir>/seed-<n>` (inferroute.load_router).
    `jobs` > 1: seeds run in that many worker processes (spawned; each loads the suite itself)."""
    df, versions = load_suite(cfg)
    args = [(cfg, router_overrides, int(s), split, n_boot, save_dir) for s in seeds]
    if jobs > 1 and len(args) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")  # torch in a forked child can hang
        with ProcessPoolExecutor(min(jobs, len(args)), mp_context=ctx) as pool:
            rows = list(pool.map(_seed_row, *zip(*args, strict=True)))
    else:
        rows = [_seed_row(*a, df=df) for a in tqdm(args, desc="seeds", disable=None)]
    per_seed = {str(int(s)): row for s, row in zip(seeds, rows, strict=True)}
    spread = seed_spread(per_seed)
    payload: dict[str, Any] = {
        "split": split,
        "seeds": [int(s) for s in seeds],
        "per_seed": per_seed,
        "spread": spread,
        "dataset_versions": versions,
    }
    if log:
        with tracking.run(
            EVAL_EXPERIMENT,
            "evaluate-seeds",
            {**_suite_params(cfg), "split": split, "seeds": ",".join(map(str, seeds))},
            dataset_versions=versions,
            tags={"evals.kind": "seeds"},
        ):
            tracking.log_metrics({f"{k}.{stat}": v[stat] for k, v in spread.items() for stat in v})
            tracking.log_json(payload, "seeds.json")
    return payload


def _seed_row(
    cfg: SuiteConfig,
    router_overrides: Mapping[str, Any] | None,
    seed: int,
    split: str,
    n_boot: int,
    save_dir: str | Path | None,
    df: pd.DataFrame | None = None,
) -> dict[str, float]:
    """One training seed of `evaluate_seeds`: train, (save,) judge; the flat row of numbers."""
    from evals import realprompts

    df = load_suite(cfg)[0] if df is None else df
    router = train_router(cfg, {**dict(router_overrides or {}), "seed": seed}, df)
    if save_dir is not None:
        router.save(str(Path(save_dir) / f"seed-{seed}"))
    res = run_eval(our_router.QualityView(router), df, cfg.on_split(split), name="inferroute")
    add_aiq_intervals({"inferroute": res}, n_boot=n_boot)
    row: dict[str, float] = {}
    for bench, br in res.benchmarks.items():
        key = primary_key(br)
        row[f"{bench}.{key}"] = br.metrics[key]
        if br.pair is not None:
            draws = M.apgr_bootstrap(*br.pair, n_boot=n_boot)
            lo, hi = np.nanpercentile(draws, [2.5, 97.5])
            row[f"{bench}.{key}_lo"], row[f"{bench}.{key}_hi"] = float(lo), float(hi)
        elif "aiq_lo" in br.metrics:
            row[f"{bench}.aiq_lo"] = br.metrics["aiq_lo"]
            row[f"{bench}.aiq_hi"] = br.metrics["aiq_hi"]
    real = real_prompts(cfg, split)
    cm = realprompts.complexity_metrics(router, real["difficulty"], n_boot=n_boot)
    em = realprompts.everyday_metrics(router)
    lm = realprompts.length_metrics(router, real["answers"])
    row.update(realprompts.task_metrics(router, held_out_real_labels(cfg, split), n_boot=n_boot))
    row.update(
        {
            "complexity.spearman": cm.get("spearman", float("nan")),
            "complexity.spearman_lo": cm.get("spearman_lo", float("nan")),
            "complexity.spearman_hi": cm.get("spearman_hi", float("nan")),
            "complexity.complex_share_sharegpt": realprompts.complex_share(router),
            "everyday.simple_called_simple": em["simple_called_simple"],
            "everyday.task_accuracy": em["task_accuracy"],
            "lengths.median_abs_log_ratio": lm.get("router.median_abs_log_ratio", float("nan")),
        }
    )
    return row


def held_out_real_labels(cfg: SuiteConfig, split: str) -> pd.DataFrame:
    """The real user prompts (the router config's `clf_real_datasets`: Auto-J) with a task label
    in `split`: the task classifier's held-out real prompts for a router trained on the train
    split (`labels_split`, split by prompt text)."""
    labels = labels_split(cfg, split)
    return labels[our_router.is_real(labels, our_router.router_config())].reset_index(drop=True)


def seed_spread(per_seed: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per metric across seeds: mean, min, max; for an interval bound (`*_lo` / `*_hi`), the
    mean bound (the typical bootstrap interval of one training run)."""
    keys = sorted({k for row in per_seed.values() for k in row})
    out = {}
    for k in keys:
        vals = np.array([row[k] for row in per_seed.values() if k in row], dtype=float)
        out[k] = {"mean": float(vals.mean()), "min": float(vals.min()), "max": float(vals.max())}
    return out


def add_aiq_intervals(
    results: Mapping[str, EvalResult], ours_name: str = "inferroute", n_boot: int = 1000
) -> None:
    """95% paired-bootstrap intervals (prompts resampled) on every multi benchmark with costs:
    `aiq_lo`/`aiq_hi` per router, and for every other router the interval of our AIQ minus its
    (`aiq_lead_lo`/`aiq_lead_hi`) with `aiq_lead_p`, the share of resamples where we do not lead."""
    benches = {b for r in results.values() for b, br in r.benchmarks.items() if br.routed}
    for bench in sorted(benches):
        have = {
            n: br.routed
            for n, r in results.items()
            if (br := r.benchmarks.get(bench)) is not None and br.routed is not None
        }
        c_max = next(iter(have.values()))[2]
        draws = M.aiq_bootstrap({n: (v[0], v[1]) for n, v in have.items()}, c_max, n_boot)
        for name, vals in draws.items():
            m = results[name].benchmarks[bench].metrics
            m["aiq_lo"], m["aiq_hi"] = (float(x) for x in np.percentile(vals, [2.5, 97.5]))
            if ours_name in draws and name != ours_name:
                lead = draws[ours_name] - vals
                m["aiq_lead_lo"], m["aiq_lead_hi"] = (
                    float(x) for x in np.percentile(lead, [2.5, 97.5])
                )
                m["aiq_lead_p"] = float((lead <= 0).mean())


def _commercial() -> list[dict[str, Any]]:
    try:
        return anchors.commercial_anchors()
    except (D.DatasetError, KeyError, FileNotFoundError) as exc:
        logger.warning("commercial MT-Bench anchors unavailable: %s", exc)
        return []


def _log_eval(
    cfg: SuiteConfig,
    results: Mapping[str, EvalResult],
    payload: Mapping[str, Any],
    versions: Mapping[str, str],
    clf: Mapping[str, Any],
    baseline_params: Mapping[str, Mapping[str, Any]] | None,
) -> None:
    params = {
        **_suite_params(cfg),
        "split": payload["split"],
        "router_uri": payload["router_uri"],
        "baseline_embedder": embeddings.active_encoder(),
    }
    params.update({f"baseline.{k}": v for k, v in (baseline_params or {}).items()})
    with tracking.run(
        EVAL_EXPERIMENT, "evaluate", params, dataset_versions=versions, tags={"evals.kind": "eval"}
    ):
        flat = {f"{n}.{k}": v for n, r in results.items() for k, v in r.flat_metrics().items()}
        flat.update(
            {f"inferroute.clf.{k}": clf[k] for k in ("macro_f1", "accuracy", "ece") if k in clf}
        )
        cv = payload.get("classifier_cv") or {}
        flat.update(
            {f"inferroute.clf_cv.{k}": cv[k] for k in ("macro_f1", "accuracy", "ece") if k in cv}
        )
        flat.update(
            {f"inferroute.{k}": v for k, v in payload.get("own_traffic", {}).items() if v == v}
        )
        tracking.log_metrics(flat)
        tracking.log_json(payload, "results.json")
        for spec in cfg.benchmarks:
            fig = figures.benchmark_figure(results, spec.name, spec.kind)
            tracking.log_figure(fig, f"plots/{spec.name}.png")
        if clf.get("confusion"):
            fig = figures.confusion_figure(np.array(clf["confusion"]), clf["labels"])
            tracking.log_figure(fig, "plots/task_confusion.png")
