"""`train(scores_df, labels_df, config) -> LearnedRouter`.

`scores_df` is the long score table of `evals.datasets` (one row per prompt x model; columns
prompt_id, dataset, prompt, task, model, score, completion_tokens, output_chars, ...). `labels_df`
holds the task-labelled prompts (prompt_id, prompt, task). Nothing here reads files except the card
YAML.

Open-ended (writing, role-play, advice) scores in the data come from AlpacaEval only, and two of its
comparisons would put a fake quality gap between GPT-4-1106 and Mixtral-8x7B on such prompts:
- AlpacaEval 1 judges every model against text-davinci-003; GPT-4-1106's only open-ended rows are
  there, and a win rate against davinci-003 says little about GPT-4-1106 vs Mixtral under another
  judge. Its rows are not trained on (`train_exclude_datasets`, default "alpaca_eval1").
- AlpacaEval 2's Mixtral entry is the "(concise)" prompt variant judged by a length-biased judge
  against a verbose GPT-4-Turbo (win rate 0.13 on our train prompts). Variants keep their own
  model name ("Mixtral-8x7B-Instruct (concise)", data/models.yaml), so they get their own column
  and their scores never become Mixtral's strength; they only help shape the shared prompt space.
  AlpacaEval 2's own baseline (GPT-4-1106 against itself, always 0.5) is dropped by the loader.
So GPT-4-1106 and Mixtral are compared only where both were scored by the same metric (RouteLLM
MMLU/GSM8K, RouterBench), and their gap on open-ended prompts is what the joint model infers from
the prompt space, not a judge artefact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from inferroute.catalog import load_cardbook
from inferroute.classifier import BoolArray, TaskClassifier, group_weights, source_weights
from inferroute.config import RouterConfig
from inferroute.costs import CHARS_PER_TOKEN, OutputLengths
from inferroute.difficulty import ComplexityFit, fit_complexity, fit_output_lengths
from inferroute.encoder import TaskEncoder, calibration_mask, fit_blend_temperature
from inferroute.encoder import fit as fit_encoder
from inferroute.errors import ConfigError
from inferroute.features import Embedder, MiniLMEmbedder, StaticEmbedder, text_stats
from inferroute.latent import LatentQualityModel, inputs
from inferroute.learned import LearnedRouter
from inferroute.preferences import PreferenceRows, fit_term, outcome
from inferroute.scoring import QualityModel, task_means
from inferroute.taxonomy import TASK_NAMES
from inferroute.types import ModelCard

logger = logging.getLogger(__name__)


class StageBar:
    """The training progress bar (tqdm, one step per stage) that also times each stage: wall and
    CPU seconds (`time.process_time`, every thread of the process) per stage in `timings`, logged
    at INFO as each stage ends. CPU seconds are what a busy shared machine cannot inflate: wall
    time there measures the other users' load as much as the work."""

    def __init__(self, total: int, desc: str) -> None:
        self.bar = tqdm(total=total, desc=desc)
        self.timings: dict[str, tuple[float, float]] = {}
        self._stage: tuple[str, float, float] | None = None

    def set_postfix_str(self, stage: str) -> None:
        self.bar.set_postfix_str(stage)
        self._stage = (stage, time.perf_counter(), time.process_time())

    def update(self) -> None:
        if self._stage is not None:
            name, wall, cpu = self._stage
            took = (time.perf_counter() - wall, time.process_time() - cpu)
            self.timings[name] = took
            logger.info("train stage %s: %.1f s wall, %.1f s CPU", name, *took)
            self._stage = None
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


def _empty(df: Any, columns: list[str]) -> Any:
    """`df` with a text prompt, or an empty frame with `columns`."""
    import pandas as pd

    if df is None:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    return df[df["prompt"].notna()].reset_index(drop=True)


def _version(config: RouterConfig, scores: Any, labels: Any) -> str:
    h = hashlib.sha1(json.dumps(config.to_flat_dict(), sort_keys=True).encode())
    h.update(",".join(sorted(map(str, scores["prompt_id"].unique()))).encode())
    h.update(str(len(scores)).encode())
    h.update(str(len(labels)).encode())
    return f"learned-{h.hexdigest()[:10]}"


def _output_lengths(
    scores: Any,
    task_of: dict[str, str],
    answers: Any,
    answer_tasks: Sequence[str],
    default: float,
) -> OutputLengths:
    """Answer lengths of the score table (tokens, else characters / 4) and of `answers` (real
    prompts answered by many models: just-eval, FLASK, AlpacaEval; `output_tokens`), fitted with
    inferroute.difficulty.fit_output_lengths per (model, predicted task)."""
    tokens = scores["completion_tokens"].astype(float)
    chars = scores["output_chars"].astype(float) / CHARS_PER_TOKEN
    tokens = tokens.where(tokens.notna(), chars)
    models = scores["model"].astype(str).tolist()
    tasks = scores["prompt_id"].map(task_of).astype(str).tolist()
    values = tokens.to_numpy(dtype=np.float64)
    if answers is not None and len(answers):
        models += answers["model"].astype(str).tolist()
        tasks += list(answer_tasks)
        values = np.concatenate([values, answers["output_tokens"].to_numpy(dtype=np.float64)])
    return fit_output_lengths(models, tasks, values, default)


def _complexity(
    config: RouterConfig,
    p_dense: npt.NDArray[np.float32],
    s_mat: npt.NDArray[np.float32],
    d_dense: npt.NDArray[np.float32],
    difficulty: Any,
) -> ComplexityFit:
    """Benchmark failure rates (weighted down) + difficulty labels: inferroute.difficulty."""
    n_scored = (~np.isnan(s_mat)).sum(1)
    fail = 1.0 - np.nanmean(np.where(n_scored[:, None] > 0, s_mat, 0.5), axis=1)
    rows = n_scored >= 2
    n_lab = len(d_dense)
    y = np.concatenate([fail[rows], difficulty["difficulty"].to_numpy(dtype=np.float64)])
    sources = ["benchmarks"] * int(rows.sum()) + difficulty["dataset"].astype(str).tolist()
    w_bench = config.complexity_bench_weight * max(n_lab, 1) / max(int(rows.sum()), 1)
    weights = np.concatenate([np.full(int(rows.sum()), w_bench), np.ones(n_lab)])
    labelled = np.concatenate([np.zeros(int(rows.sum()), bool), np.ones(n_lab, bool)])
    return fit_complexity(
        np.vstack([p_dense[rows], d_dense]),
        y,
        sources,
        weights if n_lab else np.ones(len(y)),
        labelled,
        config.complexity_alpha,
        config.complexity_simple_max_label,
        config.complexity_complex_min_label,
        config.complexity_cut_rule,
    )


def is_real(labels: Any, config: RouterConfig) -> BoolArray:
    """Which labelled prompts are real user prompts (config.clf_real_datasets)."""
    if "dataset" not in labels.columns:
        return np.zeros(len(labels), dtype=bool)
    out: BoolArray = labels["dataset"].isin(config.real_datasets()).to_numpy(dtype=bool)
    return out


def select_labels(labels_df: Any, config: RouterConfig) -> Any:
    """The labelled prompts the task classifier trains on: mapped tasks with text, benchmark
    labels capped at clf_max_per_class per task (seeded sample), every real prompt kept."""
    labels = labels_df[labels_df["task"].isin(TASK_NAMES) & labels_df["prompt"].notna()]
    labels = labels.sample(frac=1.0, random_state=config.seed)
    real = is_real(labels, config)
    rank = labels.assign(_real=real).groupby(["_real", "task"]).cumcount().to_numpy()
    return labels[real | (rank < config.clf_max_per_class)]


def fit_task_classifier(
    dense: npt.NDArray[Any],
    texts: Sequence[str],
    labels: Any,
    config: RouterConfig,
    n_emb: int,
    unlabelled: tuple[npt.NDArray[Any], Sequence[str]] | None = None,
) -> TaskClassifier:
    """The task classifier on `labels` (task, dataset columns; rows aligned with `dense`/`texts`):
    real prompts carry clf_real_share of the loss and are the calibration set (when there are
    any); the first `n_emb` dense columns (the embedding) feed the out-of-distribution term.

    Self-training (clf_pseudo_share > 0, `unlabelled` = (dense, texts) of unlabelled real prompts,
    e.g. ShareGPT): the classifier fitted on the labels predicts the unlabelled prompts; those it
    gives a calibrated confidence of at least clf_pseudo_min_conf join the training set with their
    predicted task, as a third group carrying clf_pseudo_share of the loss, and the classifier is
    fitted again. The temperature is still calibrated on labelled real prompts only."""
    real = is_real(labels, config)
    tasks = labels["task"].astype(str).tolist()
    kwargs = config.classifier_kwargs()
    if config.clf_balanced:
        kwargs["sample_weight"] = source_weights(tasks, real, config.clf_real_share)
    if real.sum() >= 80:
        kwargs["calibrate_on"] = real
    clf = TaskClassifier.fit(dense, texts, tasks, n_emb=n_emb, **kwargs)
    if config.clf_pseudo_share <= 0 or unlabelled is None or len(unlabelled[1]) == 0:
        return clf
    u_dense, u_texts = unlabelled
    proba = clf.predict_proba(u_dense, u_texts)
    keep = np.flatnonzero(proba.max(1) >= config.clf_pseudo_min_conf)
    logger.info(
        "self-training: %d of %d unlabelled prompts pseudo-labelled", len(keep), len(u_texts)
    )
    if len(keep) == 0:
        return clf
    pseudo = [TASK_NAMES[int(j)] for j in proba[keep].argmax(1)]
    all_tasks = tasks + pseudo
    groups = np.concatenate([np.where(real, "real", "benchmark"), np.full(len(keep), "pseudo")])
    kwargs["sample_weight"] = group_weights(
        all_tasks,
        groups,
        {
            "real": config.clf_real_share,
            "benchmark": max(1.0 - config.clf_real_share - config.clf_pseudo_share, 0.0),
            "pseudo": config.clf_pseudo_share,
        },
    )
    if "calibrate_on" in kwargs:
        kwargs["calibrate_on"] = np.concatenate([real, np.zeros(len(keep), bool)])
    return TaskClassifier.fit(
        np.vstack([np.asarray(dense), np.asarray(u_dense)[keep]]),
        list(texts) + [u_texts[i] for i in keep],
        all_tasks,
        n_emb=n_emb,
        **kwargs,
    )


def encoder_labels(labels_df: Any, config: RouterConfig) -> tuple[list[str], list[str], BoolArray]:
    """(texts, tasks, is_real) the task encoder is fine-tuned on: `select_labels` with the
    benchmark labels capped at enc_max_per_class per task (every real prompt kept)."""
    chosen = select_labels(
        labels_df, config.with_overrides(clf_max_per_class=config.enc_max_per_class)
    )
    return (
        chosen["prompt"].astype(str).tolist(),
        chosen["task"].astype(str).tolist(),
        is_real(chosen, config),
    )


def fit_task_encoder(
    labels_df: Any, config: RouterConfig, progress: bool = True, **kwargs: Any
) -> TaskEncoder:
    """The fine-tuned MiniLM task classifier (inferroute.encoder) on the labelled prompts
    (`kwargs`: more of `inferroute.encoder.fit`'s keyword arguments)."""
    texts, tasks, real = encoder_labels(labels_df, config)
    settings = config.encoder_settings()
    return fit_encoder(
        texts, tasks, real, settings, threads=config.enc_threads, progress=progress, **kwargs
    )


def fit_static_blend(
    encoder: TaskEncoder,
    dense: npt.NDArray[Any],
    texts: Sequence[str],
    labels: Any,
    config: RouterConfig,
    n_emb: int,
) -> TaskEncoder:
    """`encoder` with the static classifier blended in at config.enc_static_weight and the
    blend's temperature fitted on the real prompts the encoder was calibrated on (never
    fine-tuned on). The static classifier's probabilities there come from one fitted without
    them (the served one trains on every prompt), so the temperature sees honest inputs from
    both. `dense`/`texts`/`labels`: the static classifier's training rows (`select_labels`)."""
    w, skip = float(config.enc_static_weight), float(config.enc_skip_above)
    if w <= 0.0:
        return encoder.with_blend(0.0, 1.0, skip)
    settings = config.encoder_settings()
    real = is_real(labels, config)
    cal = calibration_mask(texts, real, settings.calib_frac, settings.seed)
    if cal.sum() < 20:
        return encoder.with_blend(w, 1.0, skip)
    held = fit_task_classifier(
        np.asarray(dense)[~cal], [t for t, c in zip(texts, cal, strict=True) if not c],
        labels[~cal], config, n_emb,
    )  # fmt: skip
    cal_texts = [t for t, c in zip(texts, cal, strict=True) if c]
    p_static, s = held.proba_and_support(np.asarray(dense)[cal], cal_texts)
    y = np.array([TASK_NAMES.index(t) for t in labels["task"].astype(str)[cal]], dtype=np.int64)
    t = fit_blend_temperature(
        encoder.full_proba(cal_texts), p_static, s, y, w, len(encoder.classes)
    )
    logger.info("task encoder + %.2f static: temperature %.3f on %d prompts", w, t, len(y))
    return encoder.with_blend(w, t, skip)


LAT_TASK_SOURCES = ("router", "benchmark")


def _quality_classifier(
    dense: npt.NDArray[Any], texts: Sequence[str], labels: Any, config: RouterConfig, n_emb: int
) -> TaskClassifier | None:
    """The task classifier the quality models read when config.lat_task_source is "benchmark":
    fitted like the routing one on the benchmark labels alone (None: they read the routing one)."""
    if config.lat_task_source == "router":
        return None
    bench = ~is_real(labels, config)
    if len(set(labels["task"][bench])) < 2:
        raise ConfigError("lat_task_source 'benchmark' needs benchmark labels of two tasks or more")
    keep = np.flatnonzero(bench)
    return fit_task_classifier(
        np.asarray(dense)[keep], [texts[i] for i in keep], labels.iloc[keep], config, n_emb
    )


def train(
    scores_df: Any,
    labels_df: Any,
    config: RouterConfig | None = None,
    *,
    embedder: Embedder | None = None,
    difficulty: Any = None,
    answers: Any = None,
    unlabelled: Any = None,
    task_encoder: TaskEncoder | None = None,
) -> LearnedRouter:
    """Train a LearnedRouter. `embedder` reuses an already distilled embedder (evals, tuning);
    `task_encoder` an already fine-tuned task encoder (`fit_task_encoder` on these labels and this
    config: evals keeps them on disk), used only when config.task_encoder is on.

    `difficulty`: prompts with a difficulty label (columns prompt, dataset, difficulty in [0, 1];
    evals.datasets.load_difficulty) for the complexity model. `answers`: per-model answer lengths on
    real prompts (prompt, model, output_tokens; evals.datasets.load_answer_lengths) for the expected
    output tokens. Without them complexity and lengths come from the score table alone.
    `unlabelled`: unlabelled real prompts (a `prompt` column; ShareGPT) for the task classifier's
    self-training (config.clf_pseudo_share)."""
    config = config or RouterConfig.from_yaml()
    if config.lat_task_source not in LAT_TASK_SOURCES:
        raise ConfigError(
            f"lat_task_source must be one of {', '.join(LAT_TASK_SOURCES)}, "
            f"got {config.lat_task_source!r}"
        )
    rng = np.random.default_rng(config.seed)
    steps = StageBar(8, "train inferroute")
    excluded = {d.strip() for d in config.train_exclude_datasets.split(",") if d.strip()}
    has_text = scores_df["prompt"].notna() & (scores_df["prompt"].astype(str).str.len() > 0)
    scores = scores_df[scores_df["score"].notna() & has_text & ~scores_df["dataset"].isin(excluded)]
    prompts = scores.drop_duplicates("prompt_id")[["prompt_id", "prompt", "dataset"]]
    if config.knn_max_prompts and len(prompts) > config.knn_max_prompts:
        keep = rng.choice(len(prompts), config.knn_max_prompts, replace=False)
        prompts = prompts.iloc[np.sort(keep)]
        scores = scores[scores["prompt_id"].isin(set(prompts["prompt_id"]))]
    labels = select_labels(labels_df, config)
    p_texts = prompts["prompt"].astype(str).tolist()
    l_texts = labels["prompt"].astype(str).tolist()
    difficulty = _empty(difficulty, ["prompt", "dataset", "difficulty"])
    answers = _empty(answers, ["prompt", "model", "output_tokens"])
    d_texts = difficulty["prompt"].astype(str).tolist()
    a_texts = sorted(set(answers["prompt"].astype(str)) - set(d_texts))
    unlabelled = _empty(unlabelled, ["prompt"])
    u_texts = sorted(set(unlabelled["prompt"].astype(str)))

    steps.set_postfix_str("embedder")
    if embedder is not None:
        pass
    elif config.embedder == "static":
        embedder = StaticEmbedder.distill(
            p_texts + l_texts + d_texts + a_texts,
            config.static_dim,
            config.max_chars,
            config.max_tokens,
            config.seed,
            config.static_source,
        )
    else:
        embedder = MiniLMEmbedder(config.max_chars, config.max_tokens, config.torch_threads)
    steps.update()

    steps.set_postfix_str("features")
    p_emb, l_emb = embedder.encode(p_texts), embedder.encode(l_texts)
    p_stats, l_stats = text_stats(p_texts), text_stats(l_texts)
    mu = np.vstack([p_stats, l_stats]).mean(0)
    sd = np.vstack([p_stats, l_stats]).std(0) + 1e-6
    p_dense = np.hstack([p_emb, (p_stats - mu) / sd]).astype(np.float32)
    l_dense = np.hstack([l_emb, (l_stats - mu) / sd]).astype(np.float32)
    extra_texts = d_texts + a_texts
    x_dense = np.hstack([embedder.encode(extra_texts), (text_stats(extra_texts) - mu) / sd])
    x_dense = x_dense.astype(np.float32)
    steps.update()

    steps.set_postfix_str("task classifier")
    u_part = None
    if config.clf_pseudo_share > 0 and u_texts:
        u_dense = np.hstack([embedder.encode(u_texts), (text_stats(u_texts) - mu) / sd])
        u_part = (u_dense.astype(np.float32), u_texts)
    clf = fit_task_classifier(l_dense, l_texts, labels, config, embedder.dim, u_part)
    qclf = _quality_classifier(l_dense, l_texts, labels, config, embedder.dim)
    steps.update()

    steps.set_postfix_str("task encoder")
    if not config.task_encoder:
        task_encoder = None
    else:
        if task_encoder is None:
            task_encoder = fit_task_encoder(labels_df, config)
        steps.set_postfix_str("static blend")
        task_encoder = fit_static_blend(
            task_encoder, l_dense, l_texts, labels, config, embedder.dim
        )
    steps.update()

    steps.set_postfix_str("quality")
    models = tuple(sorted(scores["model"].unique()))
    pid_index = {p: i for i, p in enumerate(prompts["prompt_id"])}
    matrix = (
        scores.groupby(["prompt_id", "model"])["score"]
        .mean()
        .unstack()
        .reindex(index=prompts["prompt_id"], columns=list(models))
    )
    s_mat = matrix.to_numpy(dtype=np.float32)
    probs = (qclf or clf).predict_proba(p_dense, p_texts)
    given = scores.drop_duplicates("prompt_id").set_index("prompt_id")["task"]
    task_idx = probs.argmax(1)
    for pid, t in given.items():
        if isinstance(t, str) and t in TASK_NAMES and pid in pid_index:
            task_idx[pid_index[pid]] = TASK_NAMES.index(t)
    quality = QualityModel(
        models,
        p_emb.astype(np.float16),
        s_mat,
        task_means(s_mat, task_idx, len(TASK_NAMES), config.prior_shrink),
        config.knn_k,
        config.knn_power,
        config.knn_kappa,
        config.knn_dims,
    )
    steps.update()

    steps.set_postfix_str("latent quality")
    sources = sorted(prompts["dataset"].astype(str).unique())
    source_idx = np.array([sources.index(str(d)) for d in prompts["dataset"]], dtype=np.int64)
    latent = LatentQualityModel.fit_ensemble(
        inputs(p_dense, probs, config.lat_task_scale),
        s_mat,
        source_idx,
        models,
        **config.latent_kwargs(),
    )
    steps.update()

    steps.set_postfix_str("complexity")
    cfit = _complexity(config, p_dense, s_mat, x_dense[: len(d_texts)], difficulty)
    steps.update()

    steps.set_postfix_str("output lengths")
    task_of = {p: TASK_NAMES[t] for p, t in zip(prompts["prompt_id"], task_idx, strict=True)}
    if not extra_texts:
        x_tasks: Any = []
    elif task_encoder is not None:  # the task the decision will name (the cascade as served)
        x_p, x_s = clf.proba_and_support(x_dense, extra_texts)
        x_tasks = task_encoder.route_proba(
            extra_texts, x_p, x_s, clf.with_support(x_p, x_s)
        ).argmax(1)
    else:
        x_tasks = clf.predict_proba(x_dense, extra_texts).argmax(1)
    task_of_text = {t: TASK_NAMES[int(i)] for t, i in zip(extra_texts, x_tasks, strict=True)}
    answer_tasks = [task_of_text[t] for t in answers["prompt"].astype(str)]
    lengths = _output_lengths(scores, task_of, answers, answer_tasks, config.default_output_tokens)
    book = load_cardbook(models)
    router = LearnedRouter(
        config,
        book,
        _version(config, scores, labels),
        embedder,
        mu.astype(np.float32),
        sd.astype(np.float32),
        clf,
        quality,
        latent,
        cfit.coef,
        cfit.intercept,
        cfit.cuts,
        lengths,
        quality_classifier=qclf,
        encoder=task_encoder,
    )
    steps.update()
    steps.close()
    router.train_timings = steps.timings
    logger.info("trained %s on %d prompts x %d models", router.version, len(prompts), len(models))
    return router


def fit_preferences(
    router: LearnedRouter,
    prefs: Any,
    cards: Mapping[str, ModelCard] | None = None,
) -> LearnedRouter:
    """`router` with a traffic preference term (inferroute.preferences) fitted on `prefs`: one row
    per labelled comparison, columns `prompt` (the text the router reads), `model_a`, `model_b`
    (empty for a thumbs up / down on `model_a`), `outcome` (1: a wins / up, 0: b wins / down,
    0.5: tie), `source` (vote, verdict, feedback) and optionally `weight` (multiplies the source's
    weight from the router's config). `cards`: the serving catalog's cards of the pool models
    (their quality_proxy / quality_prior give the base quality the term corrects)."""
    config = router.config
    rows = prefs[prefs["prompt"].notna() & prefs["model_a"].notna()].reset_index(drop=True)
    if rows.empty:
        return router.with_preferences(None, router.version)
    texts = rows["prompt"].astype(str)
    unique = sorted(set(texts))
    pos = {t: i for i, t in enumerate(unique)}
    at = texts.map(pos).to_numpy(dtype=np.int64)
    has_b = rows["model_b"].notna() & (rows["model_b"].astype(str) != "")
    models = sorted(set(rows["model_a"].astype(str)) | set(rows.loc[has_b, "model_b"].astype(str)))
    idx = {m: i for i, m in enumerate(models)}
    emb, dense = router.features(unique)
    probs, qprobs = router.task_and_quality_proba(dense, unique)
    q = router._quality(emb, dense, qprobs, models, cards or {}, with_preferences=False)
    phi = router.preference_features(dense, probs)
    a = rows["model_a"].astype(str).map(idx).to_numpy(dtype=np.int64)
    b = np.where(has_b, rows["model_b"].astype(str).map(idx).fillna(-1), -1).astype(np.int64)
    k = config.pref_logit_scale
    qa = q[at, a]
    qb = np.where(b >= 0, q[at, np.maximum(b, 0)], 0.0)
    by_source = {
        "vote": config.pref_w_vote,
        "verdict": config.pref_w_verdict,
        "feedback": config.pref_w_feedback,
    }
    w = rows["source"].map(by_source).fillna(0.0).to_numpy(dtype=np.float64)
    if "weight" in rows.columns:
        w = w * rows["weight"].fillna(1.0).to_numpy(dtype=np.float64)
    data = PreferenceRows(
        phi=phi[at],
        offset=k * (qa - qb),
        a=a,
        b=b,
        y=rows["outcome"].map(outcome).to_numpy(dtype=np.float64),
        w=w,
    )
    term = fit_term(data, models, k, config.pref_l2, config.pref_fit_scale)
    h = hashlib.sha1(term.weights.tobytes())
    h.update(json.dumps(term.to_dict(), sort_keys=True).encode())
    logger.info("preference term on %d rows over %d models", len(rows), len(models))
    return router.with_preferences(term, f"{router.version}+pref-{h.hexdigest()[:8]}")
