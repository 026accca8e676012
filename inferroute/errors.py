"""Errors raised by inferroute. One base class so callers can catch everything from the router."""


class InferrouteError(Exception):
    """Base class of every error raised by inferroute."""


class ConfigError(InferrouteError, ValueError):
    """A bad config key or value."""


class RoutingError(InferrouteError, ValueError):
    """A request the router cannot decide: empty pool, unknown optimize mode, unknown task, ..."""


class UnknownRouterError(InferrouteError, KeyError):
    """A router name that is not in the registry."""
