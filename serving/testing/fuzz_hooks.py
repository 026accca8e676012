"""Schemathesis hooks for `serving.testing.fuzz` (loaded by the CLI through SCHEMATHESIS_HOOKS).

The fuzzer holds one API key. An API key may revoke or change itself (README, "Who manages which
key"), so a fuzzed `DELETE /keys/{id}` naming the fuzzer's own key would end the run's
authentication halfway: every later case would be a 401 and test nothing. Cases aimed at the
fuzzer's own key (its id is in INFERBASE_FUZZ_OWN_KEY_ID) are dropped when generated, and any that
still reach the network (a stateful link can carry the id from a `GET /keys` answer) are pointed
at a key id that does not exist; the keys the fuzzer creates are fuzzed like any other.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from schemathesis import Case, HookContext

OWN_KEY_ENV = "INFERBASE_FUZZ_OWN_KEY_ID"
ABSENT_KEY_ID = "key_0000000000000000"


def _own() -> str:
    return os.environ.get(OWN_KEY_ENV, "")


@schemathesis.hook
def filter_path_parameters(context: HookContext, path_parameters: dict[str, Any] | None) -> bool:
    return not path_parameters or path_parameters.get("key_id") != _own()


@schemathesis.hook
def before_call(context: HookContext, case: Case, kwargs: dict[str, Any]) -> None:
    params = case.path_parameters
    if params and params.get("key_id") == _own():
        params["key_id"] = ABSENT_KEY_ID
