"""The whole loop from a gateway's captured traffic to a promoted router, in one call:

    run_loop("http://127.0.0.1:8000", "inf_...")
      1. judge    the pairs the judge has not graded (evals.judge: MT-Bench pair-v2, both orders)
      2. export   GET /api/v1/traffic/export -> a new version of the `traffic` dataset
      3. train    the router on the public data plus the older traffic (evals.experiments.train)
      4. gate     the promotion gate; with `require_traffic`, better on the newest traffic and not
                  worse on the public benchmarks (evals.promote)
Serving picks a new champion up by itself (the alias poll: docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from evals import experiments, promote
from evals.datasets import traffic_log
from evals.judge import JudgeReport, judge_pairs
from evals.suite import SuiteConfig
from evals.traffic_api import TrafficAPI

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoopResult:
    judge: JudgeReport
    traffic: traffic_log.TrafficVersion
    train: Mapping[str, Any]
    decision: promote.GateDecision | None

    def summary(self) -> dict[str, Any]:
        return {
            "judge": dataclasses.asdict(self.judge),
            "traffic": {"version": self.traffic.version, **self.traffic.counts},
            "train": dict(self.train),
            "promoted": None if self.decision is None else self.decision.promote,
            "reason": None if self.decision is None else self.decision.reason,
        }


def run_loop(
    gateway: str,
    key: str,
    *,
    judge: str | None = None,
    judge_limit: int | None = None,
    cfg: SuiteConfig | None = None,
    router_overrides: Mapping[str, Any] | None = None,
    promotion: promote.PromotionConfig | None = None,
    router: Any = None,
    do_promote: bool = True,
    transport: httpx.BaseTransport | None = None,
) -> LoopResult:
    """Judge -> export -> train -> gate against one gateway (URL and an API key of the account
    whose traffic it is). `router`: a trained base router to fit the traffic term on instead of
    training one from the public data (quick runs); `transport`: an in-process fake (tests)."""
    promotion = promotion or promote.PromotionConfig()
    with TrafficAPI(gateway, key, transport=transport) as api:
        report = judge_pairs(api, judge, limit=judge_limit)
        version = traffic_log.export(api)
    logger.info("traffic version %s: %s", version.version, dict(version.counts))
    out = experiments.train(
        cfg or SuiteConfig.load(),
        router_overrides,
        promotion=promotion,
        traffic=version.version,
        router=router,
    )
    decision = promote.promote(out["version"], promotion) if do_promote else None
    return LoopResult(report, version, out, decision)
