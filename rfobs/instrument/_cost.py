"""LLM call cost in US dollars from pydantic's genai-prices table: `llm_cost`, and `record_cost` on a span and metric.

Token counts follow the OpenTelemetry GenAI conventions: `input_tokens` includes the cached tokens (reads and
writes) and `output_tokens` includes the reasoning tokens. genai-prices' `Usage` takes them the same way (a total
plus its cached or reasoning parts), so each part is priced once, at its own rate.

genai-prices (with pydantic) is the optional extra `rfobs[cost]`, imported on the first priced call: without it,
calls carry no cost and one log line per process says how to install it. A model the table does not know gives
None and counts in `llm_cost_unknown{provider, reason}`; its name is never a label, since model names read from
responses (dated snapshots, fine-tunes) are unbounded. The cost counter's `model` label is the table's own id of
the model (`gpt-4o` for `gpt-4o-2024-08-06`), bounded by the table.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Final, Literal

from rfobs import _state
from rfobs._guard import internal_error
from rfobs.instrument import _telemetry as t

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, Provider
    from opentelemetry.trace import Span

__all__ = ["GEN_AI_USAGE_COST", "UnknownReason", "llm_cost", "record_cost"]

GEN_AI_USAGE_COST: Final = "gen_ai.usage.cost"
"""Span attribute: the call's estimated cost in US dollars (float); on agent spans, the sum over the agent."""

UnknownReason = Literal["provider", "model", "usage"]
"""Why a call has no cost: its provider or model is not in the price table, or its token counts do not add up."""
if TYPE_CHECKING:
    Found = tuple[Provider, ModelInfo] | UnknownReason

# OpenTelemetry `gen_ai.provider.name` values (and their older spellings) -> genai-prices provider ids. Names not
# listed go to genai-prices as they are, which matches ids and a few aliases ("bedrock", "vertex").
PROVIDER_IDS: Final[dict[str, str]] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "vertex_ai": "google",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "x_ai": "x-ai",
    "mistral_ai": "mistral",
    "deepseek": "deepseek",
    "groq": "groq",
    "perplexity": "perplexity",
    "cohere": "cohere",
}

_MAX_CACHED: Final = 4096  # (provider, model) pairs remembered; past that the cache starts over
_log = logging.getLogger("rfobs")
_lock = threading.Lock()


def _new_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's may have been held by another thread at fork


os.register_at_fork(after_in_child=_new_lock_in_child)
_table: DataSnapshot | None = None  # the genai-prices snapshot the cache was filled from
_models: dict[tuple[str, str], Found] = {}  # (provider, model) -> genai-prices' provider and model, or a reason
_absent = False  # genai-prices is not installed (reported once)


def llm_cost(
    provider: str,
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_creation_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> float | None:
    """The estimated cost in US dollars of one LLM call, from the genai-prices table (`pip install 'rfobs[cost]'`).

    Never raises. An unknown provider or model, or inconsistent counts, give None and count in
    `researchflow_agents_llm_cost_unknown{provider, reason}`; without genai-prices installed the result is None.

    Args:
        provider: The OpenTelemetry `gen_ai.provider.name` ("openai", "anthropic", "gcp.gemini", "aws.bedrock", ...).
        model: The model name as requested or reported ("gpt-4o-2024-08-06" is priced as "gpt-4o").
        input_tokens: All input tokens, cached ones included (`gen_ai.usage.input_tokens`).
        output_tokens: All output tokens, reasoning ones included (`gen_ai.usage.output_tokens`).
        cache_read_tokens: The input tokens read from the provider's prompt cache.
        cache_creation_tokens: The input tokens written to the prompt cache.
        reasoning_tokens: The output tokens spent on reasoning.
    """
    try:
        priced = _counted_price(
            t.current(),
            provider,
            model,
            (input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, reasoning_tokens),
        )
        return None if priced is None else priced[0]
    except Exception:
        internal_error("pricing an LLM call")
        return None


def record_cost(
    span: Span,
    instruments: t.Instruments,
    provider: str,
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_creation_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> float | None:
    """Price one LLM call (as `llm_cost`), set `gen_ai.usage.cost` on `span` and add it to the cost counter.

    The counter is `researchflow_agents_llm_cost_usd_total{provider, model}`, `model` being the price table's id.
    Never raises; returns the cost, or None when it is unknown (counted) or genai-prices is not installed.
    """
    try:
        priced = _counted_price(
            instruments,
            provider,
            model,
            (input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, reasoning_tokens),
        )
        if priced is None:
            return None
        cost, model_id = priced
        span.set_attribute(GEN_AI_USAGE_COST, cost)
        instruments.llm_cost.add(cost, {"provider": provider, "model": model_id})
        return cost
    except Exception:
        internal_error("recording an LLM call's cost")
        return None


def _counted_price(
    instruments: t.Instruments | None, provider: str, model: str, counts: tuple[int, int, int, int, int]
) -> tuple[float, str] | None:
    """`_price`, with a call it cannot price counted in `llm_cost_unknown` (when genai-prices is installed)."""
    priced = _price(provider, model, *counts)
    if isinstance(priced, str):
        if priced and instruments is not None:
            instruments.llm_cost_unknown.add((("provider", provider), ("reason", priced)))
        return None
    return priced


def _price(
    provider: str, model: str, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int, reasoning: int
) -> tuple[float, str] | UnknownReason | Literal[""]:
    """The cost and the table's model id; or why there is none ("" when genai-prices is not installed)."""
    counts = (input_tokens, output_tokens, cache_read, cache_write, reasoning)
    if (
        any(type(n) is not int or n < 0 for n in counts)
        or cache_read + cache_write > input_tokens
        or reasoning > output_tokens
    ):
        return "usage"
    found = _lookup(provider, model)
    if isinstance(found, str):
        return found
    from genai_prices import Usage

    found_provider, model_info = found
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_reasoning_tokens=reasoning,
    )
    return float(model_info.calc_price(usage, found_provider).total_price), str(model_info.id)


def _lookup(provider: str, model: str) -> Found | Literal[""]:
    """genai-prices' provider and model for the pair, cached per price snapshot; else the reason, or ""."""
    global _table
    snapshot = _snapshot()
    if snapshot is None:
        return ""
    key = (provider, model)
    with _lock:
        if _table is not snapshot:  # `genai_prices.UpdatePrices` installed newer prices
            _models.clear()
            _table = snapshot
        found = _models.get(key)
    if found is not None:
        return found
    try:
        found_provider = snapshot.find_provider(None, PROVIDER_IDS.get(provider, provider), None)
    except LookupError:
        found = "provider"
    else:
        try:
            found = snapshot.find_provider_model(model, found_provider, None, None)
        except LookupError:
            found = "model"
    with _lock:
        if len(_models) >= _MAX_CACHED:
            _models.clear()
        _models[key] = found
    return found


def _snapshot() -> DataSnapshot | None:
    """The genai-prices price snapshot in use, or None when genai-prices is not installed."""
    global _absent
    if _absent:
        return None
    try:
        from genai_prices import data_snapshot
    except ImportError:
        _absent = True
        _log.info(
            "rfobs: LLM calls are recorded without their cost in US dollars: pip install 'rfobs[cost]' for the "
            "genai-prices price table. (Reported once per process.)"
        )
        return None
    return data_snapshot.get_snapshot()


def warm_up_in_background() -> None:
    """Load the price table in a daemon thread now, so the first priced LLM call does not wait ~0.3 s for it."""
    import importlib.util

    if importlib.util.find_spec("genai_prices") is None:
        return

    def load() -> None:
        try:
            _snapshot()
        except Exception:
            internal_error("loading the LLM price table")

    threading.Thread(target=load, name="rfobs-llm-prices", daemon=True).start()


def _forget() -> None:
    global _table, _absent
    with _lock:
        _models.clear()
        _table = None
    _absent = False


_state.on_reset(_forget)
