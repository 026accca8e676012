"""ROUTERS: router kind -> class, the one place that maps the `kind` saved in router.json (and any
name a caller asks for) to code. Adding a kind: a `Router` subclass with a unique `name` that saves
and loads itself (`save_state` / `from_saved`), registered here (or with `register_router` from
outside the package); the contract tests run over every registered kind."""

from __future__ import annotations

from inferroute.errors import UnknownRouterError
from inferroute.learned import LearnedRouter
from inferroute.policy import Router
from inferroute.prior import PriorRouter

ROUTERS: dict[str, type[Router]] = {
    PriorRouter.name: PriorRouter,
    LearnedRouter.name: LearnedRouter,
}


def register_router(cls: type[Router]) -> type[Router]:
    """Register a router kind under its `name` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Router)):
        raise TypeError(f"{cls!r} is not a Router subclass")
    if cls.name in ROUTERS and ROUTERS[cls.name] is not cls:
        raise ValueError(f"router kind {cls.name!r} is already registered ({ROUTERS[cls.name]})")
    ROUTERS[cls.name] = cls
    return cls


def get_router_class(name: str) -> type[Router]:
    try:
        return ROUTERS[name]
    except KeyError:
        raise UnknownRouterError(
            f"unknown router {name!r}; supported router names: {', '.join(sorted(ROUTERS))}"
        ) from None
