"""Registry promotion: register the router as `inferroute`, move alias `champion` through a gate.

A registered version carries its validation-suite numbers as tags (`metric.<name>`: `suite_score`,
`routing_p50_ms`; and `dataset_version`). Promotion moves `champion` to the candidate only when
  the candidate beats the champion on `cfg.metric` (default `suite_score`) by `cfg.margin`, and
  its routing p50 is at most `cfg.max_p50_slowdown` times the champion's;
"beats" and "slower" read each metric's direction (`higher_is_better`) from the `evals.metrics`
registry, so a lower-is-better metric (an error, a cost, a time) gates the right way round. With no
champion yet, any candidate is promoted. The version that loses `champion` gets alias
`previous`, and the new champion records it in tag `previous_champion` (a chain, so rollbacks can go
back more than once). `rollback()` moves `champion` to that previous version.
Serving loads `models:/inferroute@champion`; a promotion or rollback is only an alias move.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evals import metrics as M
from evals import tracking

logger = logging.getLogger(__name__)

CHAMPION, PREVIOUS = "champion", "previous"
TAG_PREFIX = "metric."
SCORE_TAG, P50_TAG = TAG_PREFIX + "suite_score", TAG_PREFIX + "routing_p50_ms"


class PromotionError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class PromotionConfig:
    model_name: str = "inferroute"
    metric: str = "suite_score"  # the registered metric the candidate must beat the champion on
    margin: float = 0.002  # ... by at least this much (in the metric's better direction)
    speed_metric: str = "routing_p50_ms"  # the registered metric the candidate must not lose on
    max_p50_slowdown: float = 1.5  # ... by more than this factor
    # The own-traffic option: the candidate must beat the champion on `traffic_metric` by
    # `traffic_margin`, both measured on the candidate's newest traffic split, and may lose at most
    # `public_tolerance` on `metric` (the public benchmarks) instead of having to beat it.
    require_traffic: bool = False
    traffic_metric: str = "traffic_win_rate"
    traffic_margin: float = 0.0
    public_tolerance: float = 0.0

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any] | None) -> PromotionConfig:
        return cls(**dict(d or {}))


@dataclass(frozen=True, slots=True)
class GateDecision:
    promote: bool
    reason: str
    candidate: str
    champion: str | None


def gain(name: str, candidate: float, champion: float) -> float:
    """How much better `candidate` is than `champion` on metric `name` (negative: worse), in the
    direction the metrics registry declares for it."""
    sign = 1.0 if M.get_metric(name).higher_is_better else -1.0
    return sign * (candidate - champion)


def worse_factor(name: str, candidate: float, champion: float) -> float:
    """How many times worse `candidate` is than `champion` on a positive metric (< 1: better)."""
    if M.get_metric(name).higher_is_better:
        return champion / max(candidate, 1e-12)
    return candidate / max(champion, 1e-12)


def gate(
    candidate: Mapping[str, float], champion: Mapping[str, float] | None, cfg: PromotionConfig
) -> tuple[bool, str]:
    """Pure gate over candidate and champion metrics (`cfg.metric`, `cfg.speed_metric`)."""
    name = cfg.metric
    better = "higher" if M.get_metric(name).higher_is_better else "lower"
    if champion is None:
        return True, "no champion yet"
    cand, champ = candidate[name], champion[name]
    if cfg.require_traffic:
        return _traffic_gate(candidate, champion, cfg)
    if gain(name, cand, champ) < cfg.margin:
        return False, (
            f"{name} {cand:.4f} does not beat champion {champ:.4f} by the margin {cfg.margin} "
            f"({better} is better)"
        )
    ok, why = _speed_ok(candidate, champion, cfg)
    if not ok:
        return False, why
    return (
        True,
        f"{name} {cand:.4f} beats champion {champ:.4f} by >= {cfg.margin} ({better} is better)",
    )


def _speed_ok(
    candidate: Mapping[str, float], champion: Mapping[str, float], cfg: PromotionConfig
) -> tuple[bool, str]:
    speed = cfg.speed_metric
    cs, hs = candidate.get(speed), champion.get(speed)
    if cs is not None and hs is not None and worse_factor(speed, cs, hs) > cfg.max_p50_slowdown:
        return False, f"{speed} {cs:.2f} is over {cfg.max_p50_slowdown} x champion's {hs:.2f}"
    return True, ""


def _traffic_gate(
    candidate: Mapping[str, float], champion: Mapping[str, float], cfg: PromotionConfig
) -> tuple[bool, str]:
    """Better on the own traffic by the margin, no worse than the tolerance on the public suite."""
    t, name = cfg.traffic_metric, cfg.metric
    if t not in candidate:
        return False, f"candidate has no {t}: train it with --traffic"
    ct, ht = candidate[t], champion.get(t)
    if ht is not None and gain(t, ct, ht) < cfg.traffic_margin:
        return False, f"{t} {ct:.4f} does not beat champion {ht:.4f} by {cfg.traffic_margin}"
    cand, champ = candidate[name], champion[name]
    if gain(name, cand, champ) < -cfg.public_tolerance:
        return False, (
            f"{name} {cand:.4f} regresses from champion {champ:.4f} by more than "
            f"{cfg.public_tolerance} on the public benchmarks"
        )
    ok, why = _speed_ok(candidate, champion, cfg)
    if not ok:
        return False, why
    vs = "champion has none" if ht is None else f"champion {ht:.4f}"
    return True, f"{t} {ct:.4f} ({vs}) and {name} {cand:.4f} vs {champ:.4f} within tolerance"


def client() -> Any:
    tracking.setup()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking.tracking_uri())


def _version_metrics(mv: Any) -> dict[str, float]:
    return {k[len(TAG_PREFIX) :]: float(v) for k, v in mv.tags.items() if k.startswith(TAG_PREFIX)}


def alias_version(alias: str, cfg: PromotionConfig | None = None) -> str | None:
    cfg = cfg or PromotionConfig()
    from mlflow.exceptions import MlflowException

    try:
        return str(client().get_model_version_by_alias(cfg.model_name, alias).version)
    except MlflowException:
        return None


def tag_version(
    version: str, metrics: Mapping[str, float], cfg: PromotionConfig, **tags: str
) -> None:
    """Tag the version with its metrics (`metric.<name>`) and any other `tags`."""
    c = client()
    for name, value in metrics.items():
        c.set_model_version_tag(cfg.model_name, version, TAG_PREFIX + name, f"{float(value):.6g}")
    for k, v in tags.items():
        c.set_model_version_tag(cfg.model_name, version, k, v)


def register_router(
    router: Any, metrics: Mapping[str, float], cfg: PromotionConfig, **tags: str
) -> str:
    """Log the router in the active run (an MLflow pyfunc model), register it, tag its metrics."""
    from evals import our_router

    info = our_router.log_router(router, cfg.model_name)
    version = getattr(info, "registered_model_version", None)
    if version is None:  # older MLflow: find the version created from this run
        runs = client().search_model_versions(f"name='{cfg.model_name}'")
        version = max(int(v.version) for v in runs if v.run_id == info.run_id)
    tag_version(str(version), metrics, cfg, **tags)
    return str(version)


def promote(version: str | None = None, cfg: PromotionConfig | None = None) -> GateDecision:
    """Gate `version` (default: the latest) against the champion; move the aliases if it wins."""
    cfg = cfg or PromotionConfig()
    c = client()
    if version is None:
        versions = c.search_model_versions(f"name='{cfg.model_name}'")
        if not versions:
            raise PromotionError(f"no registered versions of {cfg.model_name!r}")
        version = str(max(int(v.version) for v in versions))
    cand = c.get_model_version(cfg.model_name, version)
    cand_metrics = _version_metrics(cand)
    if cfg.metric not in cand_metrics:
        raise PromotionError(
            f"version {version} has no {TAG_PREFIX + cfg.metric} tag: evaluate it first"
        )
    champ = alias_version(CHAMPION, cfg)
    if champ == version:
        return GateDecision(False, "already champion", version, champ)
    champ_metrics = _version_metrics(c.get_model_version(cfg.model_name, champ)) if champ else None
    if cfg.require_traffic and champ is not None and champ_metrics is not None:
        # traffic numbers compare only on the same records: the champion is measured again on
        # the candidate's newest traffic split (its own tag came from an older export)
        champ_metrics = dict(champ_metrics)
        champ_metrics.pop(cfg.traffic_metric, None)
        traffic_version = cand.tags.get("traffic_version")
        if traffic_version:
            champ_metrics.update(_champion_on_traffic(champ, traffic_version, cfg))
    ok, reason = gate(cand_metrics, champ_metrics or None, cfg)
    if ok:
        if champ is not None:
            c.set_registered_model_alias(cfg.model_name, PREVIOUS, champ)
            c.set_model_version_tag(cfg.model_name, version, "previous_champion", champ)
        c.set_registered_model_alias(cfg.model_name, CHAMPION, version)
        logger.info("promoted %s v%s to champion (%s)", cfg.model_name, version, reason)
    else:
        logger.info("kept champion v%s; candidate v%s rejected: %s", champ, version, reason)
    return GateDecision(ok, reason, version, champ)


def _champion_on_traffic(
    version: str, traffic_version: str, cfg: PromotionConfig
) -> dict[str, float]:
    """The champion's traffic metrics on the held-out split of `traffic_version`."""
    from evals import our_router, traffic_eval
    from evals.datasets import traffic_log

    prefs = traffic_log.load_preferences(traffic_version)
    router = our_router.load(f"models:/{cfg.model_name}/{version}")
    held = prefs[prefs["split"] == "test"]
    measured = traffic_eval.evaluate_traffic(router, held, traffic_eval.pool_cards())
    return {k: v for k, v in measured.items() if v == v}  # NaN: not measurable


def replace_champion(version: str, reason: str, cfg: PromotionConfig | None = None) -> GateDecision:
    """Move `champion` to `version` without the gate, because the champion does not load.

    The unloadable version is tagged `unloadable` with `reason` and is not recorded as the new
    champion's previous one (a rollback must never go back to a router that cannot be served).
    """
    cfg = cfg or PromotionConfig()
    c = client()
    champ = alias_version(CHAMPION, cfg)
    if champ is not None and champ != version:
        c.set_model_version_tag(cfg.model_name, champ, "unloadable", reason[:500])
    c.set_registered_model_alias(cfg.model_name, CHAMPION, version)
    logger.warning("champion %s v%s replaced by v%s: %s", cfg.model_name, champ, version, reason)
    return GateDecision(True, f"replaced unloadable champion v{champ}", version, champ)


def rollback(cfg: PromotionConfig | None = None) -> str:
    """Move `champion` back to the version it replaced; returns the new champion version."""
    cfg = cfg or PromotionConfig()
    c = client()
    champ = alias_version(CHAMPION, cfg)
    if champ is None:
        raise PromotionError("no champion to roll back")
    prev = c.get_model_version(cfg.model_name, champ).tags.get("previous_champion")
    if not prev:
        raise PromotionError(f"champion v{champ} has no previous champion to roll back to")
    c.set_registered_model_alias(cfg.model_name, CHAMPION, prev)
    grand = c.get_model_version(cfg.model_name, prev).tags.get("previous_champion")
    if grand:
        c.set_registered_model_alias(cfg.model_name, PREVIOUS, grand)
    else:
        c.delete_registered_model_alias(cfg.model_name, PREVIOUS)
    c.set_model_version_tag(cfg.model_name, champ, "rolled_back", "true")
    logger.info("rolled back %s champion v%s -> v%s", cfg.model_name, champ, prev)
    return prev
