"""Make sure serving has a champion it can load (`python -m evals bootstrap`, README's first step).

With a champion whose router loads, nothing happens. With none, a router is trained on the suite's
train split and promoted through the usual gate. With a champion that exists but does not load (its
artifacts deleted or moved, a store copied without `mlartifacts/`), serving would silently fall back
to the prior router: bootstrap says why it does not load, trains a replacement and moves `champion`
to it without the gate (the broken version's recorded score says nothing about a router that cannot
be served; `promote.replace_champion`). Without a data directory nothing can be trained: that is
fine when there is no champion (serving keeps the prior router), an error when it is broken.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals import experiments, our_router, promote
from evals.suite import SuiteConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BootstrapOutcome:
    ok: bool  # False: serving is left without a loadable learned router although one was expected
    message: str
    champion: str | None = None  # the champion version afterwards


def champion_uri(cfg: promote.PromotionConfig | None = None) -> str:
    return f"models:/{(cfg or promote.PromotionConfig()).model_name}@{promote.CHAMPION}"


def load_error(uri: str) -> str | None:
    """None when the router at `uri` loads, else why it does not (exception type and message)."""
    try:
        our_router.load(uri)
    except Exception as exc:  # any failure here is exactly what serving would hit at start-up
        return f"{type(exc).__name__}: {exc}"
    return None


def bootstrap(
    suite: SuiteConfig,
    router_overrides: Mapping[str, Any] | None = None,
    *,
    data_dir: str | None,
    force: bool = False,
    cfg: promote.PromotionConfig | None = None,
) -> BootstrapOutcome:
    """Train and promote a router unless a loadable champion exists (`force`: train anyway and
    gate the new version against the champion)."""
    cfg = cfg or promote.PromotionConfig()
    if not our_router.available():
        return BootstrapOutcome(
            True, "inferroute has no train/load_router yet; serving keeps the prior router"
        )
    has_data = bool(data_dir) and Path(str(data_dir)).is_dir()
    uri = champion_uri(cfg)
    champ = promote.alias_version(promote.CHAMPION, cfg)
    broken: str | None = None
    if champ is not None:
        broken = load_error(uri)
        if broken is None and not force:
            return BootstrapOutcome(
                True, f"champion v{champ} exists and loads; nothing to do", champ
            )
        if broken is not None:
            broken = f"champion v{champ} ({uri}) does not load: {broken}"
            logger.warning("%s", broken)
    if not has_data:
        if broken is not None:
            return BootstrapOutcome(
                False,
                f"{broken}. No data directory (INFERBASE_DATA_DIR) to train a replacement from: "
                "serving would fall back to the prior router. Restore the champion's artifacts, "
                "or point INFERBASE_DATA_DIR at the data and run bootstrap again.",
                champ,
            )
        if champ is None:
            return BootstrapOutcome(
                True, "no data directory (INFERBASE_DATA_DIR); serving keeps the prior router"
            )
        return BootstrapOutcome(
            True, f"--force, but no data directory; champion v{champ} is kept", champ
        )
    out = experiments.train(suite, router_overrides, promotion=cfg)
    version = out["version"]
    if broken is not None:
        decision = promote.replace_champion(version, broken, cfg)
    else:
        decision = promote.promote(version, cfg)
    now = promote.alias_version(promote.CHAMPION, cfg)
    still = load_error(uri) if now is not None else "no champion"
    if still is not None:
        return BootstrapOutcome(False, f"trained v{version}, but {uri} does not load: {still}", now)
    head = f"{broken}; " if broken else ""
    return BootstrapOutcome(
        True,
        f"{head}trained v{version}; promoted={decision.promote} ({decision.reason}); "
        f"champion is v{now}",
        now,
    )
