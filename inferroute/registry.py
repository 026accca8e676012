"""ROUTERS: router name -> class. Adding a router: a subclass, one line here, a contract test."""

from __future__ import annotations

from inferroute.errors import UnknownRouterError
from inferroute.learned import LearnedRouter
from inferroute.policy import Router
from inferroute.prior import PriorRouter

ROUTERS: dict[str, type[Router]] = {
    PriorRouter.name: PriorRouter,
    LearnedRouter.name: LearnedRouter,
}


def get_router_class(name: str) -> type[Router]:
    try:
        return ROUTERS[name]
    except KeyError:
        raise UnknownRouterError(
            f"unknown router {name!r}; supported router names: {', '.join(sorted(ROUTERS))}"
        ) from None
