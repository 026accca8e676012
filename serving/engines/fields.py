"""What may cross between a client and an engine beyond OpenAI's chat completions API.

Requests: a top-level field that is not OpenAI's (vLLM's extra sampling parameters such as `top_k`,
`min_p`, `repetition_penalty`, `guided_json`, or its internals `return_token_ids`,
`kv_transfer_params`) reaches the engine only when the model's catalog entry lists it in
`engine_params`; otherwise the request is a 400 with code `unsupported_parameter` and the field as
`param`, as OpenAI answers an argument it does not know.

Answers: vLLM's engine-internal fields (`prompt_token_ids`, `prompt_logprobs`, `kv_transfer_params`
at the top; `token_ids` and `stop_reason` in each choice) are removed from JSON answers and stream
chunks unless the catalog entry lists them in `engine_fields`. The answer is parsed and
re-serialised anyway (the gateway sets `model`), so removing them costs a few dict lookups.
"""

from __future__ import annotations

from typing import Any

from serving.engines.base import CatalogModel

# OpenAI chat completion parameters the gateway does not declare in `ChatCompletionRequest` (it
# passes them to the engine as they are); the declared ones never appear among its extras.
OPENAI_PARAMS = frozenset(
    {
        "audio",
        "function_call",
        "functions",
        "logit_bias",
        "metadata",
        "modalities",
        "parallel_tool_calls",
        "prediction",
        "prompt_cache_key",
        "reasoning_effort",
        "safety_identifier",
        "service_tier",
        "store",
        "verbosity",
        "web_search_options",
    }
)
TOP_FIELDS = ("prompt_token_ids", "prompt_logprobs", "kv_transfer_params")
CHOICE_FIELDS = ("token_ids", "stop_reason")
ENGINE_FIELDS = frozenset(TOP_FIELDS + CHOICE_FIELDS)


def unsupported(extra: dict[str, Any] | None, model: CatalogModel) -> str | None:
    """The first request field that is neither OpenAI's nor allowed by `model`'s catalog entry
    (None when all are). `extra` is the request model's `model_extra` (the fields it does not
    declare), so a request with none costs one truth test."""
    if extra:
        for name in extra:
            if name not in OPENAI_PARAMS and name not in model.engine_params:
                return name
    return None


def strip(obj: dict[str, Any], model: CatalogModel) -> None:
    """Remove engine-internal fields from one answer or stream chunk, in place."""
    top: tuple[str, ...] = TOP_FIELDS
    per_choice: tuple[str, ...] = CHOICE_FIELDS
    if model.engine_fields:
        top = tuple(k for k in top if k not in model.engine_fields)
        per_choice = tuple(k for k in per_choice if k not in model.engine_fields)
    for k in top:
        obj.pop(k, None)
    choices = obj.get("choices")
    if choices:
        for c in choices:
            if isinstance(c, dict):
                for k in per_choice:
                    c.pop(k, None)
