"""Auto-J's scenario-labelled real prompts: loader shapes, dedupe, and the scenario -> task map."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evals import datasets as D
from evals.datasets.autoj import AUTOJ_DATASETS, autoj_id, labelled_prompts
from evals.datasets.schema import LABEL_COLUMNS, lookup_task, task_map, unmapped_labels
from inferroute.taxonomy import TASK_NAMES


def test_duplicates_are_dropped_on_normalised_text() -> None:
    df = labelled_prompts(
        ["Write an email to my boss", "  write an EMAIL to my\nboss ", "", "Translate: hi"],
        ["writing_email", "functional_writing", "default", "text_to_text_translation"],
    )
    assert list(df["task_label"]) == ["writing_email", "text_to_text_translation"]
    assert df["prompt_id"].is_unique
    assert autoj_id("Write an email to my boss") == autoj_id("write  an email to my BOSS")


def test_the_map_names_a_task_or_a_reason_for_every_scenario() -> None:
    labels = task_map()["autoj"]
    assert len(labels) == 61  # 58 classifier scenarios + post_summarization, others, default
    for label, target in labels.items():
        task = target.get("task") if isinstance(target, dict) else target
        assert task in TASK_NAMES or (task is None and target.get("reason")), label
    # the choices the issue fixes: functional writing is text generation, role-play is chat
    for scenario in ("writing_email", "writing_advertisement", "writing_legal_document"):
        assert lookup_task("autoj", scenario) == (True, "creative_writing")
    assert lookup_task("autoj", "roleplay") == (True, "chat")
    assert lookup_task("autoj", "chitchat") == (True, "chat")
    assert lookup_task("autoj", "default") == (True, None)


def test_loaders_read_every_file_and_map_every_scenario(data_root: Path) -> None:
    sizes = {}
    for name in AUTOJ_DATASETS:
        df = D.load(name)
        assert list(df.columns) == list(LABEL_COLUMNS)
        assert df["prompt_id"].is_unique and df["prompt_id"].str.startswith("autoj:").all()
        assert (df["prompt"].str.len() > 0).all()
        assert unmapped_labels("autoj", df["task_label"]) == []
        assert df.loc[df["task_label"] == "default", "task"].isna().all()
        sizes[name] = len(df)
    # scenario train has no repeated prompt; the pairwise file lists a prompt once per response pair
    assert sizes == {"autoj_scenarios": 2377, "autoj_pairwise": 1102, "autoj_critiques": 793}
    scen = D.load("autoj_scenarios")
    raw = pd.read_json(data_root / "autoj/scenario_train.jsonl", lines=True)
    with_input = raw[raw["input"].fillna("").str.strip() != ""].iloc[0]
    text = f"{with_input['instruction']}\n\n{with_input['input']}"
    row = scen[scen["prompt_id"] == autoj_id(text)]
    assert len(row) == 1 and row["prompt"].iloc[0].endswith(str(with_input["input"]).strip())


def test_a_prompt_in_two_auto_j_files_is_labelled_once(data_root: Path) -> None:
    each = pd.concat([D.load(n) for n in AUTOJ_DATASETS])
    each = each[each["task"].notna()]
    labels = D.load_task_labels(AUTOJ_DATASETS, mapped_only=True)
    assert labels["prompt_id"].is_unique
    # one prompt per text (a prompt `default` in the first file that has it stays unlabelled)
    assert each["prompt_id"].nunique() - 5 <= len(labels) <= each["prompt_id"].nunique() < len(each)
    assert set(labels["task"]) >= {"creative_writing", "chat", "code_generation", "translation"}
