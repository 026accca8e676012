"""Public datasets not kept in the shared data directory: fetched from the Hugging Face hub.

They are registered with `hub=True`, so `list_datasets()`, `load_scores()` and `load_task_labels()`
leave them out unless asked (`include_hub=True`, or by name). Offline (HF_HUB_OFFLINE=1, no network)
they raise `DatasetError` with the reason. See MANIFEST.md section 2b.

- `routerbench` (withmartian/routerbench, `routerbench_0shot.pkl`): the full RouterBench, 11
  models x ~36k prompts, correctness and USD cost; same layout (and loader) as the `routerbench_zs`
  subset. Scores are clipped to [0, 1] (RouterBench's MT-Bench rows are already normalised to 0-1).
- `dolly` (databricks/databricks-dolly-15k): labelled prompts only, registered in labels.py.
"""

from __future__ import annotations

import pandas as pd

from . import source
from .registry import Files, register
from .routerdc import melt_routerbench

ROUTERBENCH = ("withmartian/routerbench", "routerbench_0shot.pkl")


@register(
    "routerbench",
    kind="scores",
    files=(),
    label_source="routerbench",
    hub=True,
    description="RouterBench full (HF withmartian/routerbench, 0-shot): 11 models, 0/1 + USD cost.",
)
def routerbench(files: Files) -> pd.DataFrame:
    path = source.hub_file(*ROUTERBENCH)
    wide = pd.read_pickle(path)  # noqa: S301 - the dataset's own published format
    long = melt_routerbench(wide)
    return long.assign(score=long["score"].clip(0.0, 1.0))
