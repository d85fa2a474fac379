"""`rfobs.conversation()`: the conversation, session and user that every span started inside a block belongs to.

Inside `with rfobs.conversation("c-42", user="u-7", session="s-1"):` (or `async with`) every span started on
rfobs's tracer provider, by rfobs's decorators or any other tracer, carries

- `gen_ai.conversation.id` (OpenTelemetry GenAI semantic conventions),
- `session.id` and `user.id` (OpenInference, also OpenTelemetry's general attributes),
- `metadata` (OpenInference): the `metadata=` mapping as a JSON string, secret-looking keys shown as `***`.

Blocks nest: an inner block overrides the fields it is given and inherits the others (metadata is merged, inner
keys winning); leaving a block, also by an exception, restores the outer one. The state is a `contextvars`
variable: asyncio tasks created inside inherit it, concurrent tasks and threads each see their own.

Across processes, `rfobs.inject()` and `rfobs.with_context()` inside a conversation also write W3C baggage
entries named like the attributes (`gen_ai.conversation.id`, `session.id`, `user.id`; metadata stays local).
Where the receiver attaches the extracted context (`rfobs.continue_trace`), its spans carry the same three
attributes. Only rfobs's helpers add these entries: the global OpenTelemetry propagators that HTTP client
instrumentations use do not send user ids to third-party APIs. These values never become metric labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Final, cast

from rfobs._check import bad
from rfobs.exceptions import ConfigError

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = [
    "BAGGAGE_KEYS",
    "CONVERSATION_ID",
    "METADATA",
    "SESSION_ID",
    "USER_ID",
    "Conversation",
    "ConversationScope",
    "MetadataValue",
    "attributes_from_baggage",
    "conversation",
    "current_conversation",
    "with_conversation_baggage",
]

CONVERSATION_ID: Final = "gen_ai.conversation.id"
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"
METADATA: Final = "metadata"
BAGGAGE_KEYS: Final = (CONVERSATION_ID, SESSION_ID, USER_ID)
"""The baggage entries a conversation travels as: named like the span attributes they become."""

MAX_ID_LENGTH: Final = 256
MAX_METADATA_ENTRIES: Final = 32
MAX_METADATA_KEY_LENGTH: Final = 64
MAX_METADATA_TEXT_LENGTH: Final = 512

MetadataValue = str | int | float | bool

_OWNER: Final = "rfobs.conversation"
_ID_ALLOWED: Final = f"a non-empty string of at most {MAX_ID_LENGTH} characters, or None"


class ConversationScope:
    """The conversation in effect: what `with rfobs.conversation(...) as scope` yields, inherited fields included.

    Immutable. `attributes` are the span attributes, computed once when the block is entered.

    Attributes:
        id: The conversation id, or None.
        user: The user id, or None.
        session: The session id, or None.
        metadata: The merged metadata (read-only).
        attributes: What the span processor sets on each span started inside.
    """

    __slots__ = ("attributes", "baggage", "id", "metadata", "outer", "owner", "session", "user")

    def __init__(
        self,
        id: str | None,
        user: str | None,
        session: str | None,
        metadata: Mapping[str, MetadataValue],
        outer: ConversationScope | None,
        owner: object = None,
    ) -> None:
        self.owner = owner  # the `Conversation` block that entered it: only that block's exit leaves it
        self.id = id
        self.user = user
        self.session = session
        self.metadata: Mapping[str, MetadataValue] = MappingProxyType(dict(metadata))
        self.outer = outer
        pairs = ((CONVERSATION_ID, id), (SESSION_ID, session), (USER_ID, user))
        self.baggage: tuple[tuple[str, str], ...] = tuple((key, value) for key, value in pairs if value is not None)
        attributes: dict[str, str] = dict(self.baggage)
        if metadata:
            attributes[METADATA] = _metadata_json(metadata)
        self.attributes: Mapping[str, str] = MappingProxyType(attributes)

    def __repr__(self) -> str:
        return (
            f"ConversationScope(id={self.id!r}, user={self.user!r}, session={self.session!r}, "
            f"metadata={dict(self.metadata)!r})"
        )


_current: ContextVar[ConversationScope | None] = ContextVar("rfobs.conversation", default=None)

current_conversation: Final = _current.get
"""The conversation in effect here (the innermost block entered in this context), or None."""


class Conversation:
    """The context manager `rfobs.conversation()` returns; usable with `with` and `async with`.

    It keeps no per-entry state: one object may be entered again, nested, or in concurrent tasks.
    """

    __slots__ = ("_id", "_metadata", "_session", "_user")

    def __init__(
        self,
        id: str | None,
        user: str | None,
        session: str | None,
        metadata: Mapping[str, MetadataValue],
    ) -> None:
        self._id = id
        self._user = user
        self._session = session
        self._metadata = metadata

    def __enter__(self) -> ConversationScope:
        outer = _current.get()
        base = outer if outer is not None else _scope_from_baggage()
        if base is None:
            scope = ConversationScope(self._id, self._user, self._session, self._metadata, None, self)
        else:
            scope = ConversationScope(
                self._id if self._id is not None else base.id,
                self._user if self._user is not None else base.user,
                self._session if self._session is not None else base.session,
                _merge(base.metadata, self._metadata),
                outer,
                self,
            )
        _current.set(scope)
        return scope

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # Restored by value, not by token: a token refuses to reset in another context (an async generator or
        # fixture finalised by another task), and this never raises into the user's code. Only a scope this block
        # entered is left: an exit out of order (a generator closed later, elsewhere) never ends or replaces the
        # conversation of whatever code is running then.
        scope = _current.get()
        if scope is not None and scope.owner is self:
            _current.set(scope.outer)

    async def __aenter__(self) -> ConversationScope:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.__exit__(kind, error, traceback)

    def __repr__(self) -> str:
        return (
            f"rfobs.conversation({self._id!r}, user={self._user!r}, session={self._session!r}, "
            f"metadata={dict(self._metadata)!r})"
        )


def conversation(
    id: str | None = None,
    *,
    user: str | None = None,
    session: str | None = None,
    metadata: Mapping[str, MetadataValue] | None = None,
) -> Conversation:
    """Put a conversation, user and session on every span started inside a `with` or `async with` block.

    Args:
        id: The conversation id (`gen_ai.conversation.id`); None: no conversation id (or the outer block's).
        user: The user id (`user.id`).
        session: The session id (`session.id`).
        metadata: Flat facts about the conversation, `str` keys to `str`, `int`, `float` or `bool` values (at
            most 32 entries, keys up to 64 and text values up to 512 characters); recorded as the JSON string
            `metadata`, secret-looking keys redacted. Merged with the outer block's.

    Returns:
        The context manager; entering it yields the `ConversationScope` in effect.

    Raises:
        ConfigError: id, user and session are all None, or an argument has the wrong type or size.

    Example:
        >>> import rfobs
        >>> with rfobs.conversation("c-42", user="u-7", metadata={"tenant": "acme"}) as scope:
        ...     scope.attributes["gen_ai.conversation.id"], scope.attributes["metadata"]
        ('c-42', '{"tenant":"acme"}')
    """
    checked_id = _check_id("id", id)
    checked_user = _check_id("user", user)
    checked_session = _check_id("session", session)
    if checked_id is None and checked_user is None and checked_session is None:
        raise ConfigError(
            f"{_OWNER}(id=None, user=None, session=None): expected at least one of id, user or session "
            "(a string); e.g. rfobs.conversation('c-42', user='u-7')"
        )
    return Conversation(checked_id, checked_user, checked_session, _check_metadata(metadata))


def _check_id(argument: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_ID_LENGTH:
        raise bad(_OWNER, argument, value, _ID_ALLOWED)
    return value.strip()


def _check_metadata(metadata: object) -> Mapping[str, MetadataValue]:
    if metadata is None:
        return MappingProxyType({})
    if not isinstance(metadata, Mapping):
        raise bad(_OWNER, "metadata", metadata, "a mapping of str keys to str, int, float or bool values, or None")
    entries = cast("Mapping[object, object]", metadata)
    if len(entries) > MAX_METADATA_ENTRIES:
        raise bad(_OWNER, "metadata", metadata, f"at most {MAX_METADATA_ENTRIES} entries, got {len(entries)}")
    checked: dict[str, MetadataValue] = {}
    for key, value in entries.items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_METADATA_KEY_LENGTH:
            allowed = f"keys that are non-empty strings of at most {MAX_METADATA_KEY_LENGTH} characters"
            raise bad(_OWNER, "metadata", metadata, f"{allowed}, got key {key!r}")
        checked[key] = _check_metadata_value(key, value)
    return MappingProxyType(checked)


def _check_metadata_value(key: str, value: object) -> MetadataValue:
    argument = f"metadata[{key!r}]"
    if isinstance(value, str):
        if len(value) > MAX_METADATA_TEXT_LENGTH:
            raise bad(_OWNER, argument, value, f"a string of at most {MAX_METADATA_TEXT_LENGTH} characters")
        return value
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise bad(_OWNER, argument, value, "a str, int, bool or finite float (metadata is flat)")


def _merge(outer: Mapping[str, MetadataValue], inner: Mapping[str, MetadataValue]) -> Mapping[str, MetadataValue]:
    """Outer metadata updated by inner, kept to `MAX_METADATA_ENTRIES` entries (the outer ones go first)."""
    if not outer or not inner:
        return inner or outer
    kept = [key for key in outer if key not in inner][: MAX_METADATA_ENTRIES - len(inner)]
    return {**{key: outer[key] for key in kept}, **inner}


def _metadata_json(metadata: Mapping[str, MetadataValue]) -> str:
    from rfobs._secrets import redact

    return json.dumps(redact(dict(metadata)), ensure_ascii=False, separators=(",", ":"))


def attributes_from_baggage(entries: Mapping[str, object]) -> dict[str, str]:
    """The conversation attributes that W3C baggage from another process holds (values checked, not trusted)."""
    found: dict[str, str] = {}
    for key in BAGGAGE_KEYS:
        value = entries.get(key)
        if isinstance(value, str) and value and len(value) <= MAX_ID_LENGTH:
            found[key] = value
    return found


def _scope_from_baggage() -> ConversationScope | None:
    """What the current context's baggage says (a remote caller's conversation), as a scope to inherit from."""
    from opentelemetry import baggage

    found = attributes_from_baggage(baggage.get_all())
    if not found:
        return None
    return ConversationScope(found.get(CONVERSATION_ID), found.get(USER_ID), found.get(SESSION_ID), {}, None)


def with_conversation_baggage(context: Context | None = None) -> Context | None:
    """`context` (None: the current one) with the conversation in effect added as baggage; as given outside one."""
    scope = _current.get()
    if scope is None:
        return context
    from opentelemetry import baggage

    for key, value in scope.baggage:
        context = baggage.set_baggage(key, value, context)
    return context
