"""The results table: markdown from the latest logged evaluation run (`results.json` artifact)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evals import tracking
from evals.experiments import EVAL_EXPERIMENT

LEARNED_ORDER = ("inferroute", "knn", "mf", "sw_ranking", "bert_head", "random")
LABELS = {
    "inferroute": "**InferRoute (ours)**",
    "knn": "kNN (k=40)",
    "mf": "Matrix factorisation (RouteLLM MF, reimpl.)",
    "sw_ranking": "SW ranking (RouteLLM SW, reimpl.)",
    "bert_head": "BERT-style classifier (MLP head on frozen MiniLM features)",
    "random": "Random",
    "oracle": "Oracle",
    "zero_router": "Zero router (hull of single models)",
}


def _f(v: Any, nd: int = 3) -> str:
    return "—" if v is None else f"{float(v):.{nd}f}"


def _pair_table(bench: str, results: Mapping[str, Any], anchors: Mapping[str, Any]) -> list[str]:
    lines = ["| router | APGR ↑ | CPT(50%) ↓ | CPT(80%) ↓ |", "|---|---:|---:|---:|"]
    for name in (*LEARNED_ORDER, "oracle"):
        m = results.get(name, {}).get(bench)
        if m:
            lines.append(
                f"| {LABELS[name]} | {_f(m['apgr'])} | {_f(m['cpt50'], 1)}% "
                f"| {_f(m['cpt80'], 1)}% |"
            )
    for a in anchors.get("routellm_paper", {}).get(bench, []):
        lines.append(
            f"| {a['router']} *(published)* | {_f(a['apgr'])} | {_f(a['cpt50'], 1)}% | "
            f"{_f(a['cpt80'], 1)}% |"
        )
    any_m = next((results[n][bench] for n in results if bench in results[n]), None)
    if any_m and "strong_quality" in any_m:
        lines.append(
            f"\nStrong (GPT-4-1106-preview) score {_f(any_m['strong_quality'])}, weak "
            f"(Mixtral-8x7B) {_f(any_m['weak_quality'])} on these prompts."
        )
    if bench == "mt_bench" and anchors.get("commercial"):
        lines += [
            "",
            "Commercial routers on MT-Bench (one operating point each, from their judged answers):",
            "",
            "| router | score (0-1) | PGR | % to GPT-4 |",
            "|---|---:|---:|---:|",
        ]
        for a in anchors["commercial"]:
            lines.append(
                f"| {a['router']} | {_f(a['score'])} | {_f(a['pgr'])} | "
                f"{_f(a.get('strong_pct'), 0) if a.get('strong_pct') is not None else 'n/a'} |"
            )
    return lines


def _aiq_cells(m: Mapping[str, Any], with_lead: bool) -> str:
    cell = _f(m.get("aiq"))
    if "aiq_lo" in m:
        cell += f" [{_f(m['aiq_lo'])}, {_f(m['aiq_hi'])}]"
    if not with_lead:
        return cell
    if "aiq_lead_lo" not in m:
        return f"{cell} | —"
    return f"{cell} | [{m['aiq_lead_lo']:+.3f}, {m['aiq_lead_hi']:+.3f}] ({_f(m['aiq_lead_p'])})"


def _multi_table(bench: str, results: Mapping[str, Any]) -> list[str]:
    has_aiq = any("aiq" in r.get(bench, {}) for r in results.values())
    lead = any("aiq_lead_lo" in r.get(bench, {}) for r in results.values())
    if has_aiq:
        lead_head = " ours − this AIQ, 95% CI (p no lead) |" if lead else ""
        lines = [
            f"| router | AIQ ↑ [95% CI] |{lead_head} top-1 quality ↑ | cost at top-1 (USD) |",
            "|---|---:|" + ("---:|" if lead else "") + "---:|---:|",
        ]
    else:
        lines = ["| router | top-1 quality ↑ |", "|---|---:|"]
    singles = {
        n[7:]: r[bench] for n, r in results.items() if n.startswith("single:") and bench in r
    }
    for name in (*LEARNED_ORDER, "zero_router", "oracle"):
        m = results.get(name, {}).get(bench)
        if not m:
            continue
        if has_aiq:
            lines.append(
                f"| {LABELS[name]} | {_aiq_cells(m, lead)} | {_f(m.get('best_quality'))} | "
                f"{_f(m.get('cost_at_best'), 6)} |"
            )
        else:
            lines.append(f"| {LABELS[name]} | {_f(m.get('best_quality'))} |")
    if singles:
        best = max(singles, key=lambda k: singles[k]["quality"])
        line = f"| best single model: {best} | "
        if has_aiq:
            line += "— | — | " if lead else "— | "
            line += f"{_f(singles[best]['quality'])} | {_f(singles[best].get('cost'), 6)} |"
        else:
            line += f"{_f(singles[best]['quality'])} |"
        lines.append(line)
    if lead:
        lines.append(
            "\nAIQ intervals: 1,000 paired bootstrap resamples of the judged prompts (every router "
            "on the same resamples); the lead column is the interval of our AIQ minus that "
            "router's, and in brackets the share of resamples in which we do not lead."
        )
    return lines


def render(payload: Mapping[str, Any]) -> str:
    results, anchors = payload["results"], payload.get("anchors", {})
    out = [
        "# InferRoute results",
        "",
        f"Split: `{payload['split']}` prompts (held out from training); router: "
        f"`{payload.get('router_uri') or 'none evaluated'}`. Dataset versions: "
        + ", ".join(f"{k}={v}" for k, v in sorted(payload.get("dataset_versions", {}).items())),
        "",
        f"Baselines are trained on the same train split and embed prompts with "
        f"`{payload.get('baseline_embedder', 'n/a')}` features ('router' = the evaluated router's "
        "own static MiniLM table). APGR/CPT: RouteLLM's definitions; AIQ: RouterBench's, over "
        "[0, the dearest single model's mean cost]. Published rows are RouteLLM's routers trained "
        "on Chatbot Arena data (+ augmentation), not on these train splits.",
        "",
    ]
    for spec in payload["benchmarks"]:
        bench = spec["name"]
        out += [f"## {bench} ({spec['kind']}: {', '.join(spec['datasets'])})", ""]
        if spec["kind"] == "pair":
            out += _pair_table(bench, results, anchors)
        else:
            out += _multi_table(bench, results)
        out.append("")
    rt = {n: r.get("routing_ms", {}) for n, r in results.items() if r.get("routing_ms")}
    if rt:
        out += ["## Routing time per prompt (ms, uncached, this machine)", ""]
        out += ["| router | p50 | p95 | p99 |", "|---|---:|---:|---:|"]
        for n, t in rt.items():
            out.append(
                f"| {LABELS.get(n, n)} | {_f(t.get('p50'), 2)} | {_f(t.get('p95'), 2)} | "
                f"{_f(t.get('p99'), 2)} |"
            )
        out.append("")
    clf = payload.get("classifier") or {}
    if clf:
        out += [
            "## Task classifier",
            "",
            "The routing decision's task (the router's fine-tuned task encoder when it has one): "
            f"macro-F1 {_f(clf.get('macro_f1'))}, accuracy {_f(clf.get('accuracy'))}, "
            f"ECE {_f(clf.get('ece'))} on {clf.get('n')} labelled prompts of the test split.",
            "",
        ]
    cv = payload.get("classifier_cv") or {}
    if cv:
        out += [
            f"{cv.get('folds')}-fold stratified cross-validation of the static classifier recipe "
            "(the quality models' task inputs; the task encoder is not refitted per fold) on "
            f"every labelled prompt (frequent classes capped at {cv.get('max_per_class')}): "
            f"macro-F1 {_f(cv.get('macro_f1'))}, accuracy {_f(cv.get('accuracy'))}, ECE "
            f"{_f(cv.get('ece'))} on {cv.get('n')} prompts.",
            "",
            "| task | precision | recall | F1 | support |",
            "|---|---:|---:|---:|---:|",
        ]
        for task, m in sorted(cv.get("per_class", {}).items()):
            out.append(
                f"| {task} | {_f(m['precision'], 2)} | {_f(m['recall'], 2)} | {_f(m['f1'], 2)} "
                f"| {int(m['support'])} |"
            )
        out.append("")
    return "\n".join(out)


def render_real(payload: Mapping[str, Any]) -> list[str]:
    """Real prompts (complexity, everyday fixture, answer lengths) and the ShareGPT table."""
    real, out = payload.get("real_prompts") or {}, []
    if real:
        c, e, n = real.get("complexity", {}), real.get("everyday", {}), real.get("lengths", {})
        per_source = ", ".join(
            f"{k.removeprefix('spearman.')} {_f(v)} (n={c.get('n.' + k.removeprefix('spearman.'))})"
            for k, v in sorted(c.items())
            if k.startswith("spearman.")
        )
        out += [
            "## Real prompts",
            "",
            f"Complexity vs held-out difficulty labels: Spearman {_f(c.get('spearman'))} on "
            f"{c.get('n')} prompts ({per_source}).",
            "",
            f"Everyday prompts (tests/fixtures/everyday_prompts.yaml, {e.get('n')} prompts): "
            f"{_f(e.get('simple_called_simple'), 2)} of the simple ones called `simple`, "
            f"{_f(e.get('complex_called_complex'), 2)} of the complex ones `complex`, task "
            f"accuracy {_f(e.get('task_accuracy'), 2)}.",
            "",
            f"Expected output tokens vs {n.get('n')} held-out answers of {n.get('models')} models: "
            f"median |log(expected/actual)| {_f(n.get('router.median_abs_log_ratio'))} "
            f"({_f(n.get('router.within_2x'), 2)} within 2x); a constant 300 tokens: "
            f"{_f(n.get('constant 300.median_abs_log_ratio'))} "
            f"({_f(n.get('constant 300.within_2x'), 2)}).",
            "",
        ]
    traffic = payload.get("traffic") or {}
    if traffic.get("markdown"):
        out += [traffic["markdown"], ""]
        problems = traffic.get("order_violations") or []
        out += [
            "Mode orders (spend cost <= balanced <= quality, quality reversed, latency lowest): "
            + ("all hold." if not problems else "; ".join(problems)),
            f"Share of prompts decided at low task confidence: "
            f"{_f(traffic.get('low_confidence_share'), 2)}.",
            "",
        ]
    return out


def evaluated_numbers(payload: Mapping[str, Any]) -> dict[str, float]:
    """The evaluated router's numbers of an `evaluate` payload under the keys `evaluate --seeds`
    uses (`mmlu.apgr`, `routerbench.aiq`, `task_real.accuracy`, `complexity.spearman`, ...)."""
    out: dict[str, float] = {}
    for bench, m in (payload.get("results") or {}).get("inferroute", {}).items():
        if not isinstance(m, Mapping):
            continue
        key = "apgr" if "apgr" in m else ("aiq" if "aiq" in m else "best_quality")
        if key in m:
            out[f"{bench}.{key}"] = float(m[key])
    real = payload.get("real_prompts") or {}
    for k, v in (real.get("task_real") or {}).items():
        out[k] = float(v)
    if "spearman" in (real.get("complexity") or {}):
        out["complexity.spearman"] = float(real["complexity"]["spearman"])
    for k in ("simple_called_simple", "task_accuracy"):
        if k in (real.get("everyday") or {}):
            out[f"everyday.{k}"] = float(real["everyday"][k])
    lengths = real.get("lengths") or {}
    if "router.median_abs_log_ratio" in lengths:
        out["lengths.median_abs_log_ratio"] = float(lengths["router.median_abs_log_ratio"])
    return out


def render_seeds(
    payload: Mapping[str, Any], evaluated: Mapping[str, Any] | None = None
) -> list[str]:
    """Per-number mean, range over training seeds and the typical 95% bootstrap interval; with
    `evaluated` (an `evaluate` payload: the champion's run), its number beside the range and
    whether it lies inside it."""
    spread = payload.get("spread") or {}
    if not spread:
        return []
    seeds = ", ".join(map(str, payload.get("seeds", [])))
    champ = evaluated_numbers(evaluated) if evaluated else {}
    who = (evaluated or {}).get("router_uri") or "the evaluated router"
    out = [
        f"## Spread over training seeds ({seeds})",
        "",
        f"One router per training seed (same data split and recipe as `evals train` and "
        f"`make serve`'s bootstrap), judged on the `{payload.get('split')}` prompts. Interval: "
        "95% bootstrap over the judged prompts (1,000 resamples), averaged over the seeds. "
        "`task_real.*`: the task classifier on the split's held-out real user prompts (Auto-J); "
        "`complexity.spearman`: against held-out FLASK / just-eval difficulty labels.",
        "",
    ]
    head = "| number | mean | min | max | 95% interval |"
    rule = "|---|---:|---:|---:|---:|"
    if champ:
        out.append(
            f"Last column: `{who}` as judged in the tables above (inside = within the "
            "seeds' [min, max])."
        )
        out.append("")
        head += " evaluated router |"
        rule += "---:|"
    out += [head, rule]
    inside_all = True
    for key, v in spread.items():
        if key.endswith(("_lo", "_hi")) or key.endswith(".n"):
            continue
        lo, hi = spread.get(f"{key}_lo"), spread.get(f"{key}_hi")
        ci = f"[{_f(lo['mean'])}, {_f(hi['mean'])}]" if lo and hi else "—"
        line = f"| {key} | {_f(v['mean'])} | {_f(v['min'])} | {_f(v['max'])} | {ci} |"
        if champ:
            c = champ.get(key)
            if c is None:
                line += " — |"
            else:
                inside = v["min"] - 1e-9 <= c <= v["max"] + 1e-9
                inside_all &= inside
                line += f" {_f(c)} ({'inside' if inside else 'OUTSIDE'}) |"
        out.append(line)
    if champ:
        out += ["", f"Evaluated router inside every seed range: {'yes' if inside_all else 'no'}."]
    out.append("")
    return out


def report(out_path: Path | None = Path("reports/results.md")) -> str:
    run = tracking.latest_run(EVAL_EXPERIMENT, "tags.`evals.kind` = 'eval'")
    if run is None:
        raise LookupError(f"no finished evaluation run in experiment {EVAL_EXPERIMENT!r}")
    payload = tracking.load_json_artifact(run.info.run_id, "results.json")
    text = render(payload) + "\n" + "\n".join(render_real(payload))
    seeds = tracking.latest_run(EVAL_EXPERIMENT, "tags.`evals.kind` = 'seeds'")
    if seeds is not None:
        text += "\n" + "\n".join(
            render_seeds(tracking.load_json_artifact(seeds.info.run_id, "seeds.json"), payload)
        )
    text += f"\n\n_Generated from MLflow run `{run.info.run_id}`._\n"
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text, encoding="utf-8")
    return text
