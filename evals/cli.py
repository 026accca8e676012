"""`python -m evals train | evaluate | tune | promote | rollback | report | bootstrap | task-eval |
judge | traffic export | learning-curve | loop`.

A thin CLI over library functions (evals.experiments, evals.tuning, evals.promote, evals.report,
evals.champion): `build_parser()` is the whole command line, each `cmd_*` one call into the library.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger("evals")


def _overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs, values parsed as YAML scalars (so types survive: 32, 0.01, true)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def _suite(args: argparse.Namespace) -> Any:
    from evals.suite import SuiteConfig

    extra = {"max_train_prompts_per_dataset": args.max_train} if args.max_train else {}
    cfg = SuiteConfig.load(Path(args.config) if args.config else None, **extra)
    cfg = cfg.only(args.benchmarks.split(",") if args.benchmarks else None)
    return cfg.capped(args.max_eval) if args.max_eval else cfg


def cmd_train(args: argparse.Namespace) -> int:
    from evals import experiments, promote

    out = experiments.train(
        _suite(args), _overrides(args.set), register=not args.no_register, traffic=args.traffic
    )
    print(json.dumps(out, indent=2))
    if args.promote and "version" in out:
        d = promote.promote(out["version"], _promotion(args))
        print(f"promote v{d.candidate}: {'yes' if d.promote else 'no'} ({d.reason})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from evals import experiments
    from evals.baselines import LEARNED

    if args.seeds:
        seeds = [int(x) for x in args.seeds.split(",")]
        out = experiments.evaluate_seeds(
            _suite(args),
            seeds,
            router_overrides=_overrides(args.set),
            save_dir=args.save_routers,
            jobs=args.jobs,
        )
        print(json.dumps(out["spread"], indent=2))
        return 0
    names = args.baselines.split(",") if args.baselines else list(LEARNED)
    payload = experiments.evaluate(
        _suite(args),
        baselines=names,
        router_uri=args.router,
        split=args.split,
        embedder=args.embedder,
        traffic=args.traffic,
    )
    if payload.get("own_traffic"):
        print(json.dumps({"own_traffic": payload["own_traffic"]}, indent=2))
    if args.report:
        from evals import report

        print(report.render(payload))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from evals import experiments, tuning
    from evals.suite import load_suite, train_frame

    if args.storage is None:
        args.storage = tuning.DEFAULT_STORAGE
    cfg = _suite(args)
    df, _ = load_suite(cfg)
    if args.target.startswith("policy:"):
        return _tune_policy(args, cfg, df)
    ctx = tuning.TuneContext(
        target=args.target,
        df=df,
        train_df=train_frame(df, cfg),
        specs=cfg.on_split("val"),
        labels=experiments.labels_split(cfg, "train") if args.target == "router" else None,
        base_overrides=_overrides(args.set),
    )
    name = args.study or f"inferroute-tune-{args.target}"
    study = tuning.tune(ctx, args.trials, name, storage=args.storage)
    print(json.dumps({"study": name, "best_value": study.best_value, "best": study.best_params}))
    return 0


def _tune_policy(args: argparse.Namespace, cfg: Any, df: Any) -> int:
    """Multi-objective (quality up, cost down) study of one optimize mode on a costed benchmark."""
    from evals import our_router, promote, traffic, tuning
    from evals.suite import train_frame

    mode = args.target.split(":", 1)[1]
    uri = args.router or f"models:/{promote.PromotionConfig().model_name}@champion"
    spec = next(
        s for s in cfg.on_split("val") if s.name == (args.policy_benchmark or "routerbench")
    )
    ctx = tuning.TuneContext(
        target=args.target,
        df=df,
        train_df=train_frame(df, cfg),
        specs=[spec],
        order_prompts=traffic.sharegpt_prompts(args.order_prompts) if args.order_prompts else (),
    )
    name = args.study or f"inferroute-policy-{mode}"
    study = tuning.tune_policy(
        ctx, our_router.load(uri), mode, spec, args.trials, name, args.storage
    )
    front = [
        {"values": t.values, "params": t.params}
        for t in tuning.pareto_front(study, bool(args.order_prompts))
    ]
    print(json.dumps({"study": name, "pareto_front": front}, indent=2))
    return 0


# the promotion gate's options (argparse name -> PromotionConfig field); a subcommand that lacks
# one (train has no --metric) leaves that field at PromotionConfig's own default
_GATE_OPTIONS = {
    "metric": "metric",
    "margin": "margin",
    "max_slowdown": "max_p50_slowdown",
    "require_traffic": "require_traffic",
    "traffic_margin": "traffic_margin",
    "public_tolerance": "public_tolerance",
}


def _promotion(args: argparse.Namespace) -> Any:
    from evals import promote

    given = {f: getattr(args, a) for a, f in _GATE_OPTIONS.items() if hasattr(args, a)}
    return promote.PromotionConfig(**given)


def cmd_promote(args: argparse.Namespace) -> int:
    from evals import promote

    d = promote.promote(args.version, _promotion(args))
    print(
        f"v{d.candidate} vs champion v{d.champion}: "
        f"{'PROMOTED' if d.promote else 'kept'} - {d.reason}"
    )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from evals import promote

    print(f"champion is now v{promote.rollback()}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from evals import report

    print(report.report(Path(args.out)))
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Train and promote a router unless a champion that loads exists (evals.champion). With no
    --max-train the suite's own cap applies, so the router `make serve` promotes is trained with
    the recipe `evals train` and `evals evaluate --seeds` use (reports/results.md)."""
    from evals.champion import bootstrap

    outcome = bootstrap(
        _suite(args),
        _overrides(args.set),
        data_dir=os.environ.get("INFERBASE_DATA_DIR"),
        force=args.force,
    )
    print(f"bootstrap: {outcome.message}")
    return 0 if outcome.ok else 1


def cmd_task_eval(args: argparse.Namespace) -> int:
    """The task classifier on held-out real prompts and leave-one-source-out (evals.task_eval)."""
    import pandas as pd

    from evals import datasets as D
    from evals import experiments, our_router, task_eval
    from evals.suite import SuiteConfig

    overrides = {**(task_eval.FAST if args.fast else {}), **_overrides(args.set)}
    labels = D.load_task_labels(mapped_only=True)
    if args.max_per_dataset:
        labels = labels.sample(frac=1.0, random_state=0)
        labels = labels[labels.groupby("dataset").cumcount() < args.max_per_dataset]
    config = our_router.router_config(overrides)
    if args.encoder:
        from evals import encoder

        result = encoder.evaluate(
            labels, config, seeds=range(args.seeds), n_boot=args.n_boot, dev=args.dev
        )
    else:
        # ShareGPT's train split, as `evals train` gets it (experiments.real_prompts), for the
        # recipe's self-training
        unlabelled = experiments.unlabelled_prompts(SuiteConfig.load(), "train")
        if args.max_per_dataset:
            unlabelled = unlabelled.sample(frac=1.0, random_state=0).head(args.max_per_dataset)
        result = task_eval.evaluate(
            labels,
            config,
            seeds=range(args.seeds),
            loso=not args.no_loso,
            n_boot=args.n_boot,
            unlabelled=unlabelled["prompt"].astype(str).tolist(),
        )
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(task_eval.table(result).to_string())
        print()
        print(task_eval.per_class_table(result).to_string())
    return 0


def _api(args: argparse.Namespace) -> Any:
    from evals.traffic_api import TrafficAPI

    if not args.key:
        raise SystemExit("an API key is needed: --key inf_... or INFERBASE_API_KEY")
    return TrafficAPI(args.gateway, args.key)


def cmd_judge(args: argparse.Namespace) -> int:
    """Grade the stored pairs with a judge model through the gateway (evals.judge)."""
    import dataclasses

    from evals.judge import judge_pairs

    with _api(args) as api:
        report = judge_pairs(api, args.judge, limit=args.limit, max_tokens=args.max_tokens)
    print(json.dumps(dataclasses.asdict(report), indent=2))
    return 0


def cmd_traffic_export(args: argparse.Namespace) -> int:
    """The gateway's labelled traffic as a new `traffic` dataset version."""
    from evals.datasets import traffic_log

    with _api(args) as api:
        v = traffic_log.export(api, since=args.since, test_frac=args.test_frac)
    print(json.dumps({"version": v.version, "path": str(v.path), **v.counts}, indent=2))
    return 0


def cmd_learning_curve(args: argparse.Namespace) -> int:
    """Labelled pairs needed to learn a task-dependent winner (evals.learning_curve)."""
    import pandas as pd

    from evals import experiments, learning_curve, our_router, traffic_eval

    router = (
        our_router.load(args.router)
        if args.router
        else experiments.train_router(_suite(args), _overrides(args.set))
    )
    prompts = learning_curve.task_prompts(split_seed=_suite(args).split_seed)
    curve = learning_curve.learning_curve(
        router,
        prompts,
        sizes=[int(x) for x in args.sizes.split(",")],
        seeds=range(args.seeds),
        cards=traffic_eval.pool_cards(),
        p_win=args.p_win,
        optimize=args.optimize,
        max_eval=args.max_eval_prompts,
    )
    with pd.option_context("display.width", 200):
        print(learning_curve.curve_table(curve).to_string())
    needed = learning_curve.pairs_needed(curve, args.target)
    print(f"pairs needed for >= {args.target:.0%} to the winner: {needed}")
    return 0


def cmd_loop(args: argparse.Namespace) -> int:
    """judge -> export -> train -> gate against one gateway (evals.loop)."""
    from evals import loop

    if not args.key:
        raise SystemExit("an API key is needed: --key inf_... or INFERBASE_API_KEY")
    router = None
    if args.base_router:
        from evals import our_router

        router = our_router.load(args.base_router)
    result = loop.run_loop(
        args.gateway,
        args.key,
        judge=args.judge,
        judge_limit=args.limit,
        cfg=_suite(args),
        router_overrides=_overrides(args.set),
        promotion=_promotion(args),
        router=router,
    )
    print(json.dumps(result.summary(), indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evals", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    def suite_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="suite YAML (default evals/configs/benchmarks.yaml)")
        sp.add_argument("--benchmarks", help="comma-separated subset of the suite's benchmarks")
        sp.add_argument("--max-train", type=int, default=0, help="cap on train prompts per dataset")
        sp.add_argument(
            "--max-eval", type=int, default=0, help="cap on judged prompts per benchmark"
        )
        sp.add_argument("--set", action="append", default=[], help="router config key=value")

    def gateway_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--gateway", default="http://127.0.0.1:8000", help="the gateway's URL")
        sp.add_argument(
            "--key", default=os.environ.get("INFERBASE_API_KEY"), help="API key (inf_...)"
        )

    def gate_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--require-traffic",
            action="store_true",
            help="gate on the newest own traffic (must beat the champion there) with no "
            "regression beyond --public-tolerance on the public benchmarks",
        )
        sp.add_argument("--traffic-margin", type=float, default=0.0)
        sp.add_argument("--public-tolerance", type=float, default=0.0)

    traffic_help = "a `traffic` dataset version, or 'latest' (python -m evals traffic export)"

    sp = sub.add_parser("train", help="train InferRoute, validate, log and register it")
    suite_args(sp)
    sp.add_argument("--no-register", action="store_true")
    sp.add_argument("--promote", action="store_true", help="then run the promotion gate")
    sp.add_argument("--traffic", help="also learn from " + traffic_help)
    gate_args(sp)
    sp.set_defaults(fn=cmd_train)

    sp = sub.add_parser("evaluate", help="baselines + champion on held-out prompts, logged")
    suite_args(sp)
    sp.add_argument("--baselines", help="comma-separated (default: all learned baselines)")
    sp.add_argument("--router", help="router URI (default: models:/inferroute@champion if any)")
    sp.add_argument("--split", default="test", choices=["val", "test"])
    sp.add_argument("--report", action="store_true", help="print the markdown table too")
    sp.add_argument(
        "--seeds",
        help="comma-separated training seeds: train one router per seed and report each number's "
        "mean / min / max and bootstrap interval (no baselines)",
    )
    sp.add_argument(
        "--save-routers",
        metavar="DIR",
        help="with --seeds: save each seed's router to DIR/seed-N (inferroute.load_router)",
    )
    sp.add_argument(
        "--jobs", type=int, default=1, help="with --seeds: train the seeds in N processes"
    )
    sp.add_argument(
        "--embedder",
        default="router",
        choices=["router", "static", "static-input", "minilm"],
        help="baseline features (default: the evaluated router's own embedder)",
    )
    sp.add_argument("--traffic", help="also judge the router on the newest split of a version")
    sp.set_defaults(fn=cmd_evaluate)

    sp = sub.add_parser("tune", help="Optuna study over hyperparameters")
    suite_args(sp)
    sp.add_argument(
        "--target",
        default="router",
        help="router, a baseline (knn, mf, bert_head) or policy:<mode> (balanced, quality, cost, "
        "latency)",
    )
    sp.add_argument("--router", help="router URI for policy studies (default: the champion)")
    sp.add_argument("--policy-benchmark", help="benchmark with costs for policy studies")
    sp.add_argument(
        "--order-prompts",
        type=int,
        default=100,
        help="ShareGPT prompts the mode orders are checked on in policy studies (0: no check)",
    )
    sp.add_argument("--trials", type=int, default=10)
    sp.add_argument("--study", help="study = MLflow experiment name")
    sp.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite optuna.db)")
    sp.set_defaults(fn=cmd_tune)

    sp = sub.add_parser("promote", help="gate a registered version against the champion")
    sp.add_argument("--version", help="default: the latest registered version")
    sp.add_argument(
        "--metric", default="suite_score", help="registered metric to beat the champion on"
    )
    sp.add_argument("--margin", type=float, default=0.002)
    sp.add_argument("--max-slowdown", type=float, default=1.5)
    gate_args(sp)
    sp.set_defaults(fn=cmd_promote)

    sp = sub.add_parser("rollback", help="move champion back to the previous champion")
    sp.set_defaults(fn=cmd_rollback)

    sp = sub.add_parser("report", help="markdown results table from the latest evaluation run")
    sp.add_argument("--out", default="reports/results.md")
    sp.set_defaults(fn=cmd_report)

    sp = sub.add_parser("bootstrap", help="train + promote unless a champion that loads exists")
    suite_args(sp)
    sp.add_argument("--force", action="store_true")
    sp.set_defaults(fn=cmd_bootstrap)

    sp = sub.add_parser(
        "task-eval", help="task classifier on held-out real prompts and leave-one-source-out"
    )
    sp.add_argument("--seeds", type=int, default=3, help="training seeds (splits) to average")
    sp.add_argument("--no-loso", action="store_true", help="skip leave-one-source-out")
    sp.add_argument("--n-boot", type=int, default=1000, help="bootstrap draws (0: none)")
    sp.add_argument("--fast", action="store_true", help="small, quick recipe (tests, notebooks)")
    sp.add_argument(
        "--max-per-dataset",
        type=int,
        default=0,
        help="cap labelled prompts per set (and the unlabelled ShareGPT prompts)",
    )
    sp.add_argument("--set", action="append", default=[], help="router config key=value")
    sp.add_argument(
        "--encoder",
        action="store_true",
        help="measure the router's fine-tuned MiniLM task encoder (evals.encoder; settings: "
        "--set enc_...) instead of the static classifier; no LOSO",
    )
    sp.add_argument(
        "--dev",
        action="store_true",
        help="with --encoder: measure on a dev quarter of each seed's training part, never its "
        "test prompts (to choose settings on)",
    )
    sp.set_defaults(fn=cmd_task_eval)

    sp = sub.add_parser("judge", help="grade the gateway's stored pairs with a judge model")
    gateway_args(sp)
    sp.add_argument("--judge", help="judge model id (default: the catalog's strongest)")
    sp.add_argument("--limit", type=int, help="at most this many pairs")
    sp.add_argument("--max-tokens", type=int, default=512, help="judge answer cap per game")
    sp.set_defaults(fn=cmd_judge)

    sp = sub.add_parser("traffic", help="the operator's own traffic dataset")
    tsub = sp.add_subparsers(dest="traffic_cmd", required=True)
    tp = tsub.add_parser("export", help="GET /api/v1/traffic/export into a new dataset version")
    gateway_args(tp)
    tp.add_argument("--since", help="only records created at or after this ISO time")
    tp.add_argument("--test-frac", type=float, default=0.2, help="newest share held out")
    tp.set_defaults(fn=cmd_traffic_export)

    sp = sub.add_parser(
        "learning-curve", help="labelled pairs needed to route each task to its synthetic winner"
    )
    suite_args(sp)
    sp.add_argument("--router", help="base router URI or directory (default: train one)")
    sp.add_argument("--sizes", default="0,10,20,50,100,200,500")
    sp.add_argument("--seeds", type=int, default=3)
    sp.add_argument("--p-win", type=float, default=0.8, help="how often the task's winner wins")
    sp.add_argument("--optimize", default="quality")
    sp.add_argument("--target", type=float, default=0.9)
    sp.add_argument("--max-eval-prompts", type=int, default=0, help="held-out prompts per task")
    sp.set_defaults(fn=cmd_learning_curve)

    sp = sub.add_parser("loop", help="judge -> traffic export -> train -> gate, one gateway")
    suite_args(sp)
    gateway_args(sp)
    gate_args(sp)
    sp.add_argument("--judge", help="judge model id (default: the catalog's strongest)")
    sp.add_argument("--limit", type=int, help="judge at most this many pairs")
    sp.add_argument("--base-router", help="start from this trained router instead of training")
    sp.set_defaults(fn=cmd_loop)

    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.fn(args))
