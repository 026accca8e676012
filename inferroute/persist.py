"""Load a router saved as a plain directory (`Router.save`: `router.json` plus the kind's own files,
no pickle). The kind named in `router.json` is looked up in `inferroute.registry`, and that class
loads itself (`from_saved`); nothing here knows one kind from another.
"""

from __future__ import annotations

import json
from pathlib import Path

from inferroute.catalog import CardBook
from inferroute.config import RouterConfig
from inferroute.errors import InferrouteError
from inferroute.policy import SAVE_FORMAT, Router
from inferroute.registry import get_router_class


def load_router_dir(path: Path) -> Router:
    meta = json.loads((path / "router.json").read_text(encoding="utf-8"))
    if meta.get("format") != SAVE_FORMAT:
        raise InferrouteError(f"unsupported router format {meta.get('format')!r} in {path}")
    cls = get_router_class(str(meta.get("kind")))
    config = RouterConfig.from_mapping(meta["config"])
    return cls.from_saved(path, meta, config, CardBook.from_dict(meta["cards"]))
