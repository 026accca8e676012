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
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from inferroute.catalog import load_cardbook
from inferroute.classifier import BoolArray, TaskClassifier, source_weights
from inferroute.config import RouterConfig
from inferroute.costs import CHARS_PER_TOKEN, OutputLengths
from inferroute.difficulty import ComplexityFit, fit_complexity, fit_output_lengths
from inferroute.features import Embedder, MiniLMEmbedder, StaticEmbedder, text_stats
from inferroute.latent import LatentQualityModel, inputs
from inferroute.learned import LearnedRouter
from inferroute.scoring import QualityModel, task_means
from inferroute.taxonomy import TASK_NAMES

logger = logging.getLogger(__name__)


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
    dense: npt.NDArray[Any], texts: Sequence[str], labels: Any, config: RouterConfig, n_emb: int
) -> TaskClassifier:
    """The task classifier on `labels` (task, dataset columns; rows aligned with `dense`/`texts`):
    real prompts carry clf_real_share of the loss and are the calibration set (when there are
    any); the first `n_emb` dense columns (the embedding) feed the out-of-distribution term."""
    real = is_real(labels, config)
    tasks = labels["task"].astype(str).tolist()
    kwargs = config.classifier_kwargs()
    if config.clf_balanced:
        kwargs["sample_weight"] = source_weights(tasks, real, config.clf_real_share)
    if real.sum() >= 80:
        kwargs["calibrate_on"] = real
    return TaskClassifier.fit(dense, texts, tasks, n_emb=n_emb, **kwargs)


def train(
    scores_df: Any,
    labels_df: Any,
    config: RouterConfig | None = None,
    *,
    embedder: Embedder | None = None,
    difficulty: Any = None,
    answers: Any = None,
) -> LearnedRouter:
    """Train a LearnedRouter. `embedder` reuses an already distilled embedder (evals, tuning).

    `difficulty`: prompts with a difficulty label (columns prompt, dataset, difficulty in [0, 1];
    evals.datasets.load_difficulty) for the complexity model. `answers`: per-model answer lengths on
    real prompts (prompt, model, output_tokens; evals.datasets.load_answer_lengths) for the expected
    output tokens. Without them complexity and lengths come from the score table alone."""
    config = config or RouterConfig.from_yaml()
    rng = np.random.default_rng(config.seed)
    steps = tqdm(total=7, desc="train inferroute")
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
    clf = fit_task_classifier(l_dense, l_texts, labels, config, embedder.dim)
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
    probs = clf.predict_proba(p_dense, p_texts)
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

    task_of = {p: TASK_NAMES[t] for p, t in zip(prompts["prompt_id"], task_idx, strict=True)}
    x_tasks = clf.predict_proba(x_dense, extra_texts).argmax(1) if extra_texts else []
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
    )
    steps.update()
    steps.close()
    logger.info("trained %s on %d prompts x %d models", router.version, len(prompts), len(models))
    return router
