"""The OpenTelemetry GenAI semantic conventions as tables: attributes, span definitions and metrics, with sources.

Sources, read from the real text:

- open-telemetry/semantic-conventions v1.41.1 (tag commit ead83b9b0fa36540c1642fce46e874f002ac23f1, the last
  release holding the GenAI conventions): `model/gen-ai/registry.yaml` (names, types, well-known values),
  `model/gen-ai/spans.yaml` (span kinds, names, requirement levels), `model/gen-ai/metrics.yaml` and
  `docs/gen-ai/gen-ai-metrics.md` (instruments, units, attributes, bucket boundaries); the message shapes from
  `docs/gen-ai/gen-ai-{input,output}-messages.json` and `gen-ai-system-instructions.json`.
- open-telemetry/semantic-conventions-genai, where the conventions moved (unreleased; `model/gen-ai/spans.yaml`,
  `metrics.yaml` and `docs/gen-ai/gen-ai-metrics.md` at commit 004902b8cb70aa5ae6ca4ae07132b7daabcd3e10): the
  `gen_ai.invoke_agent.duration` and `gen_ai.execute_tool.duration` metrics, and `gen_ai.agent.name` on
  `execute_tool` spans. Marked `GENAI_MAIN` below.

Where the two differ, the release wins for requirement levels; an attribute either one lists for a span is
allowed on it. Not adopted yet: main's unreleased token-usage redesign (`gen_ai.client.inference.tokens`
counters replacing `gen_ai.client.token.usage`), and main dropping `gen_ai.provider.name` from in-process
`invoke_agent` spans (v1.41.1 requires it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

RELEASE: Final = "semantic-conventions v1.41.1"
GENAI_MAIN: Final = "semantic-conventions-genai@004902b8"


class Level(Enum):
    """A requirement level, as the conventions name them."""

    REQUIRED = "required"
    CONDITIONALLY_REQUIRED = "conditionally_required"
    RECOMMENDED = "recommended"
    OPT_IN = "opt_in"


R, C, REC, OPT = Level.REQUIRED, Level.CONDITIONALLY_REQUIRED, Level.RECOMMENDED, Level.OPT_IN


@dataclass(frozen=True)
class Attribute:
    """A registry attribute: its type and, for an enum, its well-known values (the enums are open)."""

    type: str  # string, int, double, boolean, string[], any
    well_known: tuple[str, ...] = ()


PROVIDERS: Final = (
    "openai", "gcp.gen_ai", "gcp.vertex_ai", "gcp.gemini", "anthropic", "cohere", "azure.ai.inference",
    "azure.ai.openai", "ibm.watsonx.ai", "aws.bedrock", "perplexity", "x_ai", "deepseek", "groq", "mistral_ai",
)  # fmt: skip
OPERATIONS: Final = (
    "chat", "generate_content", "text_completion", "embeddings", "retrieval", "create_agent", "invoke_agent",
    "execute_tool", "invoke_workflow",
)  # fmt: skip

# Registry v1.41.1 `registry.gen_ai` (every gen_ai.* attribute; deprecated ones are not here, so they fail), plus
# the general attributes the GenAI spans and metrics reference.
REGISTRY: Final[Mapping[str, Attribute]] = {
    "gen_ai.provider.name": Attribute("string", PROVIDERS),
    "gen_ai.request.model": Attribute("string"),
    "gen_ai.request.max_tokens": Attribute("int"),
    "gen_ai.request.choice.count": Attribute("int"),
    "gen_ai.request.temperature": Attribute("double"),
    "gen_ai.request.top_p": Attribute("double"),
    "gen_ai.request.top_k": Attribute("double"),
    "gen_ai.request.stop_sequences": Attribute("string[]"),
    "gen_ai.request.frequency_penalty": Attribute("double"),
    "gen_ai.request.presence_penalty": Attribute("double"),
    "gen_ai.request.encoding_formats": Attribute("string[]"),
    "gen_ai.request.seed": Attribute("int"),
    "gen_ai.request.stream": Attribute("boolean"),
    "gen_ai.response.id": Attribute("string"),
    "gen_ai.response.model": Attribute("string"),
    "gen_ai.response.finish_reasons": Attribute("string[]"),
    "gen_ai.response.time_to_first_chunk": Attribute("double"),
    "gen_ai.usage.input_tokens": Attribute("int"),
    "gen_ai.usage.cache_read.input_tokens": Attribute("int"),
    "gen_ai.usage.cache_creation.input_tokens": Attribute("int"),
    "gen_ai.usage.output_tokens": Attribute("int"),
    "gen_ai.usage.reasoning.output_tokens": Attribute("int"),
    "gen_ai.token.type": Attribute("string", ("input", "output")),
    "gen_ai.conversation.id": Attribute("string"),
    "gen_ai.agent.id": Attribute("string"),
    "gen_ai.agent.name": Attribute("string"),
    "gen_ai.agent.description": Attribute("string"),
    "gen_ai.agent.version": Attribute("string"),
    "gen_ai.tool.name": Attribute("string"),
    "gen_ai.tool.call.id": Attribute("string"),
    "gen_ai.tool.description": Attribute("string"),
    "gen_ai.tool.type": Attribute("string"),  # a string; examples function, extension, datastore
    "gen_ai.tool.call.arguments": Attribute("any"),
    "gen_ai.tool.call.result": Attribute("any"),
    "gen_ai.tool.definitions": Attribute("any"),
    "gen_ai.data_source.id": Attribute("string"),
    "gen_ai.operation.name": Attribute("string", OPERATIONS),
    "gen_ai.output.type": Attribute("string", ("text", "json", "image", "speech")),
    "gen_ai.embeddings.dimension.count": Attribute("int"),
    "gen_ai.retrieval.documents": Attribute("any"),
    "gen_ai.retrieval.query.text": Attribute("string"),
    "gen_ai.system_instructions": Attribute("any"),
    "gen_ai.input.messages": Attribute("any"),
    "gen_ai.output.messages": Attribute("any"),
    "gen_ai.evaluation.name": Attribute("string"),
    "gen_ai.evaluation.score.value": Attribute("double"),
    "gen_ai.evaluation.score.label": Attribute("string"),
    "gen_ai.evaluation.explanation": Attribute("string"),
    "gen_ai.prompt.name": Attribute("string"),
    "gen_ai.workflow.name": Attribute("string"),
    "error.type": Attribute("string", ("_OTHER",)),
    "server.address": Attribute("string"),
    "server.port": Attribute("int"),
}

CUSTOM_VALUES: Final[Mapping[str, frozenset[str]]] = {
    # "a custom value MAY be used" when no well-known value applies: rfobs running an agent in-process.
    "gen_ai.provider.name": frozenset({"rfobs"}),
}

# Allowed on any span (registry note on gen_ai.conversation.id: "Application developers ... MAY add conversation
# id to GenAI and other spans").
ANY_SPAN: Final[Mapping[str, Level]] = {"gen_ai.conversation.id": C}

# Attributes rfobs adds under the `gen_ai.` namespace that the conventions do not (yet) define, each with the
# reason, and the type it must have. Issue #11 names `gen_ai.usage.cost` (USD, as Langfuse and OpenLIT write it),
# so rfobs keeps that name until the conventions settle on one; no other unknown `gen_ai.*` name may pass.
RFOBS_EXTENSIONS: Final[Mapping[str, type]] = {"gen_ai.usage.cost": float}


@dataclass(frozen=True)
class SpanType:
    """One GenAI span definition: the operations it covers, its kinds, its name, and its attributes by level."""

    id: str
    operations: tuple[str, ...]
    kinds: tuple[str, ...]
    name_format: str
    name_fallback: str  # when the format's second attribute is absent
    attributes: Mapping[str, Level]
    source: str = RELEASE

    def required(self) -> list[str]:
        """The attributes every span of this type must carry."""
        return [name for name, level in self.attributes.items() if level is R]


_INFERENCE_COMMON: Final = {
    "gen_ai.operation.name": R, "gen_ai.provider.name": R, "gen_ai.request.model": C, "error.type": C,
    "server.address": REC, "server.port": C,
}  # fmt: skip
_REQUEST_PARAMETERS: Final = {
    "gen_ai.request.max_tokens": REC, "gen_ai.request.choice.count": C, "gen_ai.request.temperature": REC,
    "gen_ai.request.top_p": REC, "gen_ai.request.stop_sequences": REC, "gen_ai.request.frequency_penalty": REC,
    "gen_ai.request.presence_penalty": REC, "gen_ai.request.seed": C, "gen_ai.output.type": C,
}  # fmt: skip
_USAGE: Final = {
    "gen_ai.usage.input_tokens": REC, "gen_ai.usage.cache_read.input_tokens": REC,
    "gen_ai.usage.cache_creation.input_tokens": REC, "gen_ai.usage.output_tokens": REC,
}  # fmt: skip
_CONTENT: Final = {
    "gen_ai.system_instructions": OPT, "gen_ai.input.messages": OPT, "gen_ai.output.messages": OPT,
    "gen_ai.tool.definitions": OPT,
}  # fmt: skip

INFERENCE: Final = SpanType(
    "span.gen_ai.inference.client",
    ("chat", "text_completion", "generate_content"),
    ("CLIENT", "INTERNAL"),  # CLIENT; INTERNAL allowed for a model running in the same process
    "{gen_ai.operation.name} {gen_ai.request.model}",
    "{gen_ai.operation.name}",
    {
        **_INFERENCE_COMMON, **_REQUEST_PARAMETERS, **_USAGE, **_CONTENT,
        "gen_ai.request.top_k": REC, "gen_ai.request.stream": C, "gen_ai.response.id": REC,
        "gen_ai.response.model": REC, "gen_ai.response.finish_reasons": REC,
        "gen_ai.response.time_to_first_chunk": REC, "gen_ai.usage.reasoning.output_tokens": REC,
        "gen_ai.conversation.id": C,
    },
)  # fmt: skip
EMBEDDINGS: Final = SpanType(
    "span.gen_ai.embeddings.client",
    ("embeddings",),
    ("CLIENT",),
    "{gen_ai.operation.name} {gen_ai.request.model}",
    "{gen_ai.operation.name}",
    {
        **_INFERENCE_COMMON, "gen_ai.request.encoding_formats": REC, "gen_ai.usage.input_tokens": REC,
        "gen_ai.embeddings.dimension.count": REC, "gen_ai.response.model": REC,
    },
)  # fmt: skip
_INVOKE_AGENT: Final = {
    "gen_ai.operation.name": R, "gen_ai.provider.name": R, "gen_ai.request.model": C, "error.type": C,
    **_REQUEST_PARAMETERS, **_USAGE, **_CONTENT, "gen_ai.response.finish_reasons": REC,
    "gen_ai.conversation.id": C, "gen_ai.agent.id": C, "gen_ai.agent.name": C, "gen_ai.agent.description": C,
    "gen_ai.agent.version": C, "gen_ai.data_source.id": C,
}  # fmt: skip
INVOKE_AGENT_INTERNAL: Final = SpanType(
    "span.gen_ai.invoke_agent.internal",
    ("invoke_agent",),
    ("INTERNAL",),
    "invoke_agent {gen_ai.agent.name}",
    "invoke_agent",
    _INVOKE_AGENT,
)
INVOKE_AGENT_CLIENT: Final = SpanType(
    "span.gen_ai.invoke_agent.client",
    ("invoke_agent",),
    ("CLIENT",),
    "invoke_agent {gen_ai.agent.name}",
    "invoke_agent",
    {**_INVOKE_AGENT, "server.address": REC, "server.port": C},
)
EXECUTE_TOOL: Final = SpanType(
    "span.gen_ai.execute_tool.internal",
    ("execute_tool",),
    ("INTERNAL",),
    "execute_tool {gen_ai.tool.name}",
    "execute_tool {gen_ai.tool.name}",  # gen_ai.tool.name is required: no fallback
    {
        "gen_ai.operation.name": R, "gen_ai.tool.name": R, "gen_ai.tool.call.id": REC,
        "gen_ai.tool.description": REC, "gen_ai.tool.type": REC, "gen_ai.tool.call.arguments": OPT,
        "gen_ai.tool.call.result": OPT, "error.type": C,
        "gen_ai.agent.name": C,  # GENAI_MAIN: "When applicable", the agent executing the tool
    },
)  # fmt: skip
SPAN_TYPES: Final = (INFERENCE, EMBEDDINGS, INVOKE_AGENT_INTERNAL, INVOKE_AGENT_CLIENT, EXECUTE_TOOL)

TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864
)  # fmt: skip
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
)  # fmt: skip
AGENT_DURATION_BUCKETS: Final = (
    0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6
)  # fmt: skip


@dataclass(frozen=True)
class Metric:
    """A GenAI metric: instrument, unit, value type, attributes by level, the recommended bucket boundaries."""

    name: str
    instrument: str
    unit: str
    value_type: str
    attributes: Mapping[str, Level]
    buckets: tuple[float, ...]
    source: str = RELEASE
    streaming_only: bool = False


_CLIENT_METRIC: Final = {
    "gen_ai.operation.name": R, "gen_ai.provider.name": R, "gen_ai.request.model": C, "server.port": C,
    "server.address": REC, "gen_ai.response.model": REC,
}  # fmt: skip
METRICS: Final[Mapping[str, Metric]] = {
    m.name: m
    for m in (
        Metric(
            "gen_ai.client.token.usage", "histogram", "{token}", "int",
            {**_CLIENT_METRIC, "gen_ai.token.type": R}, TOKEN_BUCKETS,
        ),
        Metric(
            "gen_ai.client.operation.duration", "histogram", "s", "double",
            {**_CLIENT_METRIC, "error.type": C}, DURATION_BUCKETS,
        ),
        Metric(
            "gen_ai.client.operation.time_to_first_chunk", "histogram", "s", "double",
            _CLIENT_METRIC, DURATION_BUCKETS, streaming_only=True,
        ),
        Metric(
            "gen_ai.invoke_agent.duration", "histogram", "s", "double",
            {"error.type": C, "gen_ai.agent.name": C, "gen_ai.request.model": REC}, AGENT_DURATION_BUCKETS,
            source=GENAI_MAIN,
        ),
        Metric(
            "gen_ai.execute_tool.duration", "histogram", "s", "double",
            {"gen_ai.tool.name": R, "error.type": C, "gen_ai.agent.name": C, "gen_ai.tool.type": REC},
            DURATION_BUCKETS, source=GENAI_MAIN,
        ),
    )
}  # fmt: skip
