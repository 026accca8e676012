"""The dataset loaders against the real shared data (../shared/data, see its MANIFEST.md)."""

from __future__ import annotations

import ast
import gzip
import shutil
from pathlib import Path

import pandas as pd
import pytest

from evals import datasets as D
from evals.datasets import source
from evals.datasets.schema import FLOAT_COLUMNS, KIND_COLUMNS, STR_COLUMNS, unmapped_labels
from inferroute.taxonomy import TASK_NAMES

LOCAL = [n for n in D.list_datasets() if n not in {"dolly"}]
SCORED = D.list_datasets("scores") + D.list_datasets("anchor")


@pytest.fixture(scope="module")
def scores(data_root: Path) -> pd.DataFrame:
    return D.load_scores()


@pytest.mark.parametrize("name", LOCAL)
def test_every_dataset_loads_with_the_schema(data_root: Path, name: str) -> None:
    df = D.load(name)
    spec = D.DATASETS[name]
    assert len(df) > 0
    if spec.kind not in {"scores", "anchor"}:
        assert list(df.columns) == list(KIND_COLUMNS[spec.kind])
    else:
        assert list(df.columns) == list(D.SCORE_COLUMNS)
        for col in FLOAT_COLUMNS:
            assert df[col].dtype == "float64", col
        assert df["score"].between(0.0, 1.0).all()
        assert not df.duplicated(["prompt_id", "model"]).any()
        assert df["model"].notna().all()
    for col in set(STR_COLUMNS) & set(df.columns):
        assert pd.api.types.is_string_dtype(df[col]), col
    assert (df["dataset"] == name).all()
    assert df["prompt_id"].notna().all()


def test_table_sizes_match_the_manifest(scores: pd.DataFrame) -> None:
    n = scores.groupby("dataset").agg(prompts=("prompt_id", "nunique"), models=("model", "nunique"))
    assert n.loc["routellm_mmlu"].tolist() == [14042 - 5, 2]
    assert n.loc["routellm_gsm8k"].tolist() == [1319 - 12, 2]
    assert n.loc["routellm_mt_bench"].tolist() == [80 - 8, 2]
    assert n.loc["routerbench_zs", "models"] == 11
    assert n.loc["routerdc_model7", "models"] == 7
    assert n.loc["llmrouter", "models"] == 9
    assert n.loc["routerarena"].tolist() == [809, 2]
    assert n.loc["routerbench_mini"].tolist() == [800, 2]
    assert n.loc["alpaca_eval2"].tolist() == [805, 58 - 3]


def test_contaminated_prompts_are_dropped(data_root: Path) -> None:
    gsm8k = D.load("routellm_gsm8k")
    assert not gsm8k["prompt"].str.startswith("Janet’s ducks lay 16 eggs per day").any()
    contaminated = pd.read_json(data_root / "routellm/mmlu/contaminated_prompts.jsonl", lines=True)
    assert not D.load("routellm_mmlu")["prompt"].isin(contaminated["eval_prompt"]).any()
    mt = D.load("routellm_mt_bench")
    assert "mt_bench:81" not in set(mt["prompt_id"])  # the Hawaii travel blog post
    assert "mt_bench:82" in set(mt["prompt_id"])


def test_judge_attacks_baseline_and_mislabelled_files_are_absent(scores: pd.DataFrame) -> None:
    ae2 = scores[scores["dataset"] == "alpaca_eval2"]
    for bad in ("NullModel", "gpt4_gamed", "example", "GPT-4-1106-preview"):
        assert bad not in set(ae2["model"])
    ae1 = scores[scores["dataset"] == "alpaca_eval1"]
    assert "falcon-7b-instruct" not in set(ae1["model"])
    assert "falcon-40b-instruct" in set(ae1["model"])
    assert {"Mixtral-8x7B-Instruct (concise)", "GPT-3.5-turbo-1106 (verbose)"} <= set(ae2["model"])


def test_alpaca_eval2_score_is_the_leaderboard_win_rate(
    data_root: Path, scores: pd.DataFrame
) -> None:
    board = pd.read_csv(
        data_root / "alpaca_eval/leaderboards/"
        "data_AlpacaEval_2__weighted_alpaca_eval_gpt4_turbo_leaderboard.csv",
        index_col=0,
    )
    ae2 = scores[scores["dataset"] == "alpaca_eval2"]
    mean = ae2.groupby("model")["score"].mean() * 100
    for raw, canonical in [("claude-2", "Claude-2"), ("gpt-3.5-turbo-1106", "GPT-3.5-turbo-1106")]:
        assert mean[canonical] == pytest.approx(board.loc[raw, "win_rate"], abs=0.05)


def test_mt_bench_scores_invert_to_the_judge_scale(data_root: Path) -> None:
    mt = D.load("routellm_mt_bench")
    raw = pd.read_json(data_root / "routellm/mt_bench/judgements.jsonl.gz", lines=True)
    raw = raw[raw["question_id"] == 82].groupby("model")["score"].mean()
    row = mt[mt["prompt_id"] == "mt_bench:82"].set_index("model")["score"] * 9 + 1
    assert row["GPT-4-1106-preview"] == pytest.approx(raw["gpt-4-1106-preview"])
    assert row["Mixtral-8x7B-Instruct"] == pytest.approx(
        raw["mistralai/Mixtral-8x7B-Instruct-v0.1"]
    )


def test_canonical_names_join_models_across_datasets(scores: pd.DataFrame) -> None:
    by_model = scores.groupby("model")["dataset"].unique()
    assert {"routellm_mmlu", "routerbench_zs"} <= set(by_model["GPT-4-1106-preview"])
    assert {"routellm_gsm8k", "routerbench_zs"} <= set(by_model["Mixtral-8x7B-Instruct"])
    assert {"alpaca_eval2", "routerbench_zs"} <= set(by_model["Claude-2"])
    assert D.base_model("Mixtral-8x7B-Instruct (concise)") == "Mixtral-8x7B-Instruct"


def test_costs_tokens_latency_where_the_data_has_them(scores: pd.DataFrame) -> None:
    filled = scores.groupby("dataset")[["cost_usd", "prompt_tokens", "latency_ms"]].count()
    assert filled.loc["routerbench_zs", "cost_usd"] == (scores["dataset"] == "routerbench_zs").sum()
    assert filled.loc["routerarena"].tolist()[:2] == [1618, 1618]
    assert filled.loc["routerbench_mini"].tolist() == [1600, 1600, 1600]
    mini = scores[scores["dataset"] == "routerbench_mini"].groupby("model")["latency_ms"].mean()
    assert mini["Qwen3.5-35B-A3B"] == pytest.approx(722.5, abs=0.1)


@pytest.mark.parametrize("name", [n for n in LOCAL if D.DATASETS[n].label_source])
def test_every_task_label_is_mapped(data_root: Path, name: str) -> None:
    df = D.load(name)
    assert unmapped_labels(D.DATASETS[name].label_source, df["task_label"]) == []
    assert set(df["task"].dropna()) <= set(TASK_NAMES)


def test_task_labels_cover_the_taxonomy(data_root: Path) -> None:
    labels = D.load_task_labels()
    assert list(labels.columns) == list(D.LABEL_COLUMNS)
    assert not labels["prompt_id"].duplicated().any()
    counts = labels["task"].value_counts()
    for task in ("math", "code_generation", "closed_qa", "reasoning", "creative_writing"):
        assert counts[task] >= 200, task
    assert set(counts.index) >= set(TASK_NAMES) - {"summarization", "other"}


def test_split_by_prompt_is_deterministic_and_disjoint(scores: pd.DataFrame) -> None:
    df = scores[scores["dataset"].isin(["routellm_mmlu", "alpaca_eval2"])]
    a = D.split_by_prompt(df, seed=0)
    b = D.split_by_prompt(df.sample(frac=1.0, random_state=1), seed=0)
    assert a.sort_index().equals(b.sort_index())
    assert a.index.is_unique and set(a.index) == set(df["prompt_id"])
    share = a.value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7, abs=0.02)
    assert share["test"] == pytest.approx(0.15, abs=0.02)
    assert not D.split_by_prompt(df, seed=1).equals(a)
    rows = df["prompt_id"].map(a)
    assert df.assign(split=rows).groupby("prompt_id")["split"].nunique().max() == 1


def test_split_by_text_groups_the_same_question_across_sources(scores: pd.DataFrame) -> None:
    df = scores[scores["dataset"].isin(["routellm_gsm8k", "routerdc_model7"])]
    split = D.split_by_prompt(df, group="text")
    same = df.drop_duplicates("prompt_id").assign(split=lambda d: d["prompt_id"].map(split))
    norm = same["prompt"].str.split().str.join(" ").str.lower()
    assert same.groupby(norm)["split"].nunique().max() == 1
    assert (norm.duplicated()).sum() > 1000  # GSM8K test is in both sources


def test_leave_one_dataset_out(scores: pd.DataFrame) -> None:
    df = scores[scores["dataset"].isin(["alpaca_eval1", "alpaca_eval2", "routellm_mt_bench"])]
    folds = list(D.leave_one_dataset_out(df))
    assert [f[0] for f in folds] == ["alpaca_eval1", "alpaca_eval2", "routellm_mt_bench"]
    for name, train, test in folds:
        assert (df.loc[test, "dataset"] == name).all() and test.sum() == (
            df["dataset"] == name
        ).sum()
        assert not (train & test).any()
        assert not set(df.loc[train, "prompt_id"]) & set(df.loc[test, "prompt_id"])
    ae1_train = folds[0][1]
    assert not df.loc[ae1_train, "dataset"].isin(["alpaca_eval2"]).any()  # same 805 prompts


def test_dataset_version_is_a_content_hash(scores: pd.DataFrame) -> None:
    mt = scores[scores["dataset"] == "routellm_mt_bench"]
    v = D.dataset_version(mt)
    assert v == D.dataset_version(mt.sample(frac=1.0, random_state=3))
    changed = mt.copy()
    changed.iloc[0, changed.columns.get_loc("score")] = 0.123
    assert D.dataset_version(changed) != v


def test_summary(scores: pd.DataFrame) -> None:
    s = D.summary(scores)
    assert s.loc["routellm_mmlu", "prompts"] == 14037
    assert bool(s.loc["routerbench_mini", "has_latency_ms"])
    assert D.task_counts(D.load_task_labels()).loc["mt_bench_questions"].sum() == 80


def _fake_download(root: Path, calls: list[str]):
    """A fetcher that serves the shared data dir's copy (uncompressed, as upstream serves it)."""
    by_url = {source.source_url(p): p for p in source.manifest()["files"] if source.source_url(p)}

    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        local = root / by_url[url]
        dest.parent.mkdir(parents=True, exist_ok=True)
        opener = gzip.open if local.suffix == ".gz" else open
        with opener(local, "rb") as src, dest.open("wb") as out:  # type: ignore[operator]
            shutil.copyfileobj(src, out)

    return fetch


def test_missing_files_are_fetched_from_the_pinned_source(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERBASE_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path / "home"))
    calls: list[str] = []
    monkeypatch.setattr(source, "fetcher", _fake_download(data_root, calls))
    fetched = D.load("routellm_mt_bench")
    pd.testing.assert_frame_equal(fetched, D.load("routellm_mt_bench", data_dir=data_root))
    assert len(calls) == 3
    assert all(
        u.startswith("https://raw.githubusercontent.com/lm-sys/RouteLLM/0b64fdaf") for u in calls
    )
    assert any(u.endswith("routellm/evals/mt_bench/judgements.jsonl") for u in calls)

    # A data dir that has some of the files: only the missing one is fetched.
    partial = tmp_path / "partial"
    for name in (
        "routellm/mt_bench/question.jsonl",
        "routellm/mt_bench/contaminated_prompts.jsonl",
    ):
        (partial / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_root / name, partial / name)
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path / "home2"))
    calls.clear()
    pd.testing.assert_frame_equal(D.load("routellm_mt_bench", data_dir=partial), fetched)
    assert [u.rsplit("/", 1)[1] for u in calls] == ["judgements.jsonl"]


def test_fetch_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERBASE_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path / "home"))

    def offline(url: str, dest: Path) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(source, "fetcher", offline)
    with pytest.raises(D.DatasetError, match="INFERBASE_DATA_DIR"):
        D.load("vicuna_bench")
    with pytest.raises(D.DatasetError, match="DERIVED"):
        D.load("alpaca_eval2")
    with pytest.raises(D.DatasetError, match="unknown dataset 'nope'"):
        D.load("nope")


def test_hub_dataset_goes_through_load_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path / "home"))
    rows = {
        "instruction": ["Summarize this.", "Name three fruits."],
        "context": ["A long text.", ""],
        "response": ["Short.", "Apple, pear, fig."],
        "category": ["summarization", "brainstorming"],
    }
    asked: list[str] = []

    def fake_load(hub_id: str, **kwargs: object) -> object:
        asked.append(hub_id)
        return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    dolly = D.load("dolly")
    assert asked == ["databricks/databricks-dolly-15k"]
    assert dolly["task"].tolist() == ["summarization", "brainstorming"]
    assert dolly["prompt"].iloc[0] == "Summarize this.\n\nA long text."

    def unreachable(hub_id: str, **kwargs: object) -> object:
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path / "home2"))
    with pytest.raises(D.DatasetError, match="hub"):
        D.load("dolly")


def test_full_routerbench_from_the_hub_uses_the_routerbench_layout(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in for the hub's routerbench_0shot.pkl: RouterBench's own rows (the RouterDC subset
    # keeps the upstream layout, with prompts as lists rather than stringified lists).
    wide = pd.read_csv(data_root / "routerdc/routerbench_zs/mbpp_test.csv.gz")
    wide["prompt"] = wide["prompt"].map(ast.literal_eval)
    pickle = tmp_path / "routerbench_0shot.pkl"
    wide.to_pickle(pickle)
    asked: list[tuple[str, str]] = []

    def fake_hub_file(repo_id: str, filename: str) -> Path:
        asked.append((repo_id, filename))
        return pickle

    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(source, "hub_file", fake_hub_file)
    assert "routerbench" not in D.list_datasets() and "routerbench" in D.list_datasets(
        include_hub=True
    )
    full = D.load("routerbench")
    assert asked == [("withmartian/routerbench", "routerbench_0shot.pkl")]
    subset = D.load("routerbench_zs")
    subset = subset[subset["prompt_id"].isin(full["prompt_id"])]
    cols = ["prompt_id", "model", "prompt", "score", "cost_usd"]
    pd.testing.assert_frame_equal(
        full[cols].sort_values(cols[:2]).reset_index(drop=True),
        subset[cols].sort_values(cols[:2]).reset_index(drop=True),
    )
    assert set(full["task"]) == {"code_generation"}


def test_leaderboards_and_prices(data_root: Path) -> None:
    boards = D.load_leaderboards()
    ae2 = boards[boards["board"] == "alpaca_eval2"].set_index("model")
    assert "NullModel" not in ae2.index
    assert ae2.loc["Claude-2", "score"] == pytest.approx(0.1719, abs=1e-3)
    assert boards["score"].between(0, 1).all()
    prices = D.load_prices()
    nim = prices[prices["source"] == "llmrouter"].set_index("model")
    assert nim.loc["Qwen2.5-7B-Instruct", "input_usd_per_mtok"] == 0.2
    assert len(prices[prices["source"] == "routerarena"]) == 45


def test_wizardlm_difficulty_is_keyed_like_the_labels(data_root: Path) -> None:
    from evals.datasets.labels import wizardlm_difficulty

    difficulty = wizardlm_difficulty()
    assert difficulty.between(1, 10).all() and len(difficulty) == 218
    assert set(difficulty.index) == set(D.load("wizardlm_testset")["prompt_id"])


def test_output_lengths_cover_models_without_scores(scores: pd.DataFrame) -> None:
    lengths = D.load_output_lengths()
    assert not lengths.duplicated(["source", "prompt_id", "model"]).any()
    ae = lengths[lengths["source"] == "alpaca_eval"]
    assert ae["model"].nunique() == 227 - 2  # judge attacks dropped
    assert set(scores.loc[scores["dataset"] == "alpaca_eval2", "model"]) <= set(ae["model"])
    arena = lengths[lengths["source"] == "arena_hard"].groupby("model")["output_tokens"].mean()
    assert set(arena.index) == {"GPT-4-0314", "GPT-4-0613", "GPT-3.5-turbo-0125"}
    assert (lengths["output_chars"] > 0).mean() > 0.99


def test_parsed_frames_are_cached_and_callers_cannot_corrupt_them(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evals.datasets import registry

    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path / "home"))
    first = D.load("routellm_mt_bench")
    cached = list((tmp_path / "home" / "cache" / "datasets").glob("routellm_mt_bench-*.parquet"))
    assert len(cached) == 1
    first.loc[:, "score"] = -1.0  # a caller editing its copy
    monkeypatch.setattr(registry, "_MEMO", {})

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("raw files parsed again")

    monkeypatch.setattr(pd, "read_json", no_parsing)
    again = D.load("routellm_mt_bench")  # from parquet, raw files untouched
    assert again["score"].between(0, 1).all()
    assert D.load("routellm_mt_bench")["score"].between(0, 1).all()  # from the in-process memo


def test_real_prompt_tables_difficulty_lengths_and_sharegpt(data_root: Path) -> None:
    flask = D.load("flask")
    assert len(flask) == 1735 and flask["prompt_id"].is_unique
    assert sorted(flask["difficulty"].unique()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    levels = flask.groupby("difficulty_label")["difficulty"].first()
    assert levels["simple lifestyle knowledge"] < levels["expert level knowledge"]
    tags = D.load("just_eval_tags")
    assert len(tags) == 371 and set(tags["difficulty"]) <= {0.0, 0.5, 1.0}
    # just-eval's MT-Bench prompts stay in the tables but never reach training
    assert (tags["subset"] == "mt").sum() == 45
    train = D.load_difficulty()
    assert "mt" not in set(train["subset"]) and len(train) == 1735 + 371 - 45
    lengths = D.load_answer_lengths()
    assert not lengths["prompt_id"].isin(tags.loc[tags["subset"] == "mt", "prompt_id"]).any()
    by_model = lengths.groupby("model")["source"].unique()
    # answer models join the canonical names of the score tables
    assert "just_eval_outputs" in by_model["GPT-4-0613"]
    assert "flask_outputs" in by_model["Llama-2-70B-chat"]
    assert "alpaca_eval" in by_model["Llama-2-70B-chat"]
    assert (lengths["output_tokens"] > 0).all()
    gpt4 = D.load("just_eval_outputs").query("model == 'GPT-4-0613'")
    assert gpt4["output_tokens"].notna().all() and len(gpt4) == 998
    share = D.load("sharegpt")
    assert len(share) > 11000 and (share["prompt"].str.strip().str.len() > 0).all()
