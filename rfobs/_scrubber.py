r"""The secret scrubber's engine: which key names hold secrets, and where secrets lie in a text, in linear time.

Python's `re` backtracks, so a pattern such as `[\w.-]*token[\w.-]*` tried at every position of a long run of
letters costs the square of the run. The patterns here keep to three rules instead:

1. Every pattern starts with a literal (`ghp_`, `eyJ`, `://`, `password`), which `re` finds without trying a
   match at each position; a pattern that cannot (the Telegram token) runs only when a literal it needs is
   present.
2. A run that something else follows is possessive (`{8,}+`) or bounded by a small constant (`{0,64}`), so an
   attempt never gives back more than a constant number of characters; an attempt that fails has therefore
   read a constant number of characters, or a run that no other attempt of the same pattern reads again.
3. Work whose length depends on the input (a PEM key's body, the value after `password=`) is done once, by
   `bytes.find` or one possessive match, and the scan resumes after it.

The patterns run on the text encoded as ASCII with `?` for every other character, so byte positions are
character positions; keywords are matched in its lowercase copy. `tests/reliability/test_scrub_speed.py`
feeds 1 MB built against each rule and bounds the time.
"""

from __future__ import annotations

import functools
import re
from typing import Final, NamedTuple

__all__ = ["REDACTED", "is_secret_key", "secret_spans"]

REDACTED: Final = "***"

# -- key names

# A key is a secret when one of its words is one of these (`DB_PASSWORD`, `client_secret`, `sig`)...
_SECRET_WORDS: Final = frozenset((
    "password", "passwd", "passphrase", "passcode", "secret", "secrets", "token", "apikey", "auth", "authorization",
    "credential", "credentials", "cookie", "cookies", "privatekey", "accountkey", "sharedaccesskey", "sig",
    "signature", "jwt",
))  # fmt: skip
# ...or ends in one (`PGPASSWORD`, `clientsecret`, `accesstoken`)...
_SECRET_ENDINGS: Final = ("password", "passwd", "secret", "token", "apikey", "privatekey")
# ...or is `key` after one of these (`api_key`, `SharedAccessKey`, `Ocp-Apim-Subscription-Key`)...
_KEY_QUALIFIERS: Final = frozenset((
    "api", "private", "secret", "access", "account", "master", "encryption", "signing", "ssh", "client", "session",
    "license", "subscription", "functions", "shared", "app", "service", "admin", "auth", "write", "ingest",
    "ingestion", "deploy", "storage", "webhook", "consumer", "host", "gpg", "pgp", "root", "hmac", "security",
))  # fmt: skip
# ...or is `pass`/`pwd` in a longer name (`db_pass`; a bare `PWD` is the working directory).
_SHORT_WORDS: Final = frozenset({"pass", "pwd"})
# A word right after the secret one that makes the key describe a secret rather than hold it: `token_count`,
# `llm.token_count.prompt`, `api_key_id`, `password_file`, `secret_name`, `auth_type`, `secret_backend`.
_DESCRIPTORS: Final = frozenset((
    "id", "ids", "count", "counts", "type", "types", "length", "len", "size", "limit", "limits", "usage", "url",
    "uri", "endpoint", "path", "file", "filename", "dir", "name", "names", "enabled", "expiry", "expires",
    "expiration", "at", "ttl", "format", "field", "fields", "env", "var", "policy", "version", "budget", "index",
    "min", "max", "rotation", "backend", "provider",
))  # fmt: skip
_WORD: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def is_secret_key(key: str) -> bool:
    """Whether a setting, header, attribute or argument name looks like it holds a secret.

    Judged by its words (`OPENAI_API_KEY` is `openai`, `api`, `key`): `password`, `secret`, `token`, `auth`,
    `api key`, `private key`, `cookie`, `sig` and the like. Plural `tokens` (`input_tokens`, `max_tokens`) are
    LLM token counts, `author`, `tokenizer` and `session_id` hold no secret, and a trailing descriptor
    (`token_count`, `secret_name`, `password_file`) names something about a secret rather than the secret.
    """
    return _judge(key[:256])


@functools.lru_cache(maxsize=4096)
def _judge(key: str) -> bool:
    words = [word.lower() for word in _WORD.findall(key)]
    last = -1
    for index, word in enumerate(words):
        if (
            word in _SECRET_WORDS
            or word.endswith(_SECRET_ENDINGS)
            or (word in {"key", "keys"} and index > 0 and words[index - 1] in _KEY_QUALIFIERS)
            or (word in _SHORT_WORDS and len(words) > 1)
        ):
            last = index
    if last < 0:
        return False
    return last == len(words) - 1 or words[last + 1] not in _DESCRIPTORS


# -- credentials recognisable by themselves

# Literal prefixes of well-known credentials and what follows them. After each prefix of n characters, a
# lookbehind checks that the character before it does not continue a word (`xAIza...` is no Google key).
_PREFIXED: Final[tuple[tuple[str, bytes], ...]] = (
    ("AIza", rb"[0-9A-Za-z_-]{30,}+"),  # Google API key
    ("GOCSPX-", rb"[0-9A-Za-z_-]{20,}+"),  # Google OAuth client secret
    ("ya29.", rb"[0-9A-Za-z_-]{20,}+"),  # Google OAuth access token
    ("ghp_ gho_ ghu_ ghs_ ghr_", rb"[0-9A-Za-z]{30,}+"),  # GitHub
    ("github_pat_", rb"[0-9A-Za-z_]{30,}+"),  # GitHub fine-grained
    ("glpat- glptt- gldt- glrt- glcbt- glsoat-", rb"[0-9A-Za-z_-]{20,}+"),  # GitLab
    ("xoxb- xoxp- xoxa- xoxo- xoxr- xoxs- xoxe- xapp-", rb"[0-9A-Za-z-]{10,}+"),  # Slack
    ("sk_live_ rk_live_ sk_test_ rk_test_ whsec_", rb"[0-9A-Za-z]{16,}+"),  # Stripe
    ("sk-", rb"[0-9A-Za-z_-]{20,}+"),  # OpenAI (sk-proj-), Anthropic (sk-ant-), OpenRouter, DeepSeek
    ("hf_ r8_", rb"[0-9A-Za-z]{30,}+"),  # Hugging Face, Replicate
    ("gsk_ xai- pplx-", rb"[0-9A-Za-z]{40,}+"),  # Groq, xAI, Perplexity
    ("pcsk_", rb"[0-9A-Za-z_]{40,}+"),  # Pinecone
    ("tvly-", rb"[0-9A-Za-z_-]{20,}+"),  # Tavily
    ("lsv2_pt_ lsv2_sk_", rb"[0-9a-f_]{32,}+"),  # LangSmith
    ("npm_", rb"[0-9A-Za-z]{36,}+"),  # npm
    ("pypi-", rb"[0-9A-Za-z_-]{50,}+"),  # PyPI
    ("SG.", rb"[0-9A-Za-z_-]{16,}+\.[0-9A-Za-z_-]{16,}+"),  # SendGrid
    ("SK", rb"[0-9a-fA-F]{32}(?![0-9A-Za-z])"),  # Twilio API key
    ("key-", rb"[0-9A-Za-z]{32,}+"),  # Mailgun
    ("dop_v1_ doo_v1_ dor_v1_", rb"[0-9a-f]{64,}+"),  # DigitalOcean
    ("shpat_ shpss_ shpca_ shppa_", rb"[0-9a-fA-F]{32,}+"),  # Shopify
    ("dapi", rb"[0-9a-f]{32,}+"),  # Databricks
    ("AKIA ASIA", rb"[0-9A-Z]{16}(?![0-9A-Za-z])"),  # AWS access key id
    ("hvs. hvb.", rb"[0-9A-Za-z_-]{20,}+"),  # HashiCorp Vault
    ("dp.pt. dp.st. dp.sa. dp.ct.", rb"[0-9A-Za-z]{30,}+"),  # Doppler
    ("glsa_ glc_", rb"[0-9A-Za-z_]{30,}+"),  # Grafana
    ("NRAK-", rb"[0-9A-Z]{27,}+"),  # New Relic
    ("PMAK-", rb"[0-9a-f-]{40,}+"),  # Postman
    ("sntrys_ sntryu_", rb"[0-9A-Za-z_]{40,}+"),  # Sentry
    ("sbp_", rb"[0-9a-f]{40,}+"),  # Supabase
    ("pscale_tkn_ pscale_pw_", rb"[0-9A-Za-z_-]{30,}+"),  # PlanetScale
    ("lin_api_", rb"[0-9A-Za-z]{30,}+"),  # Linear
    ("secret_ ntn_", rb"[0-9A-Za-z]{40,}+"),  # Notion
    ("ATATT", rb"[0-9A-Za-z_=-]{60,}+"),  # Atlassian
    ("AGE-SECRET-KEY-1", rb"[0-9A-Z]{50,}+"),  # age
    ("sq0atp- sq0csp-", rb"[0-9A-Za-z_-]{22,}+"),  # Square
    ("fo1_", rb"[0-9A-Za-z_-]{40,}+"),  # Fly.io
    ("eyJ", rb"[0-9A-Za-z_-]{8,}+\.eyJ[0-9A-Za-z_-]{8,}+\.[0-9A-Za-z_-]*+"),  # JWT: header.payload.signature
    ("https://hooks.slack.com/services/", rb"[0-9A-Za-z/]{20,}+"),  # Slack webhook
    ("https://discord.com/api/webhooks/ https://discordapp.com/api/webhooks/", rb"[0-9]{10,}+/[0-9A-Za-z_-]{30,}+"),
)
_WORD_CHAR: Final = rb"0-9A-Za-z_-"


class _Patterns(NamedTuple):
    """The compiled patterns; built on first use (about 5 ms: not a cost every `import rfobs` pays)."""

    tokens: re.Pattern[bytes]
    separator: re.Pattern[str]
    telegram: re.Pattern[bytes]
    userinfo: re.Pattern[bytes]
    pem_begin: re.Pattern[bytes]
    keyed: re.Pattern[bytes]
    key_run: re.Pattern[bytes]
    scheme_credential: re.Pattern[bytes]
    flag: re.Pattern[bytes]
    double_quoted: re.Pattern[bytes]
    single_quoted: re.Pattern[bytes]
    escaped_quote: re.Pattern[bytes]
    plain_value: re.Pattern[bytes]
    xml_value: re.Pattern[bytes]
    line_value: re.Pattern[bytes]
    scheme: re.Pattern[bytes]


@functools.cache
def _patterns() -> _Patterns:
    # Grouped by first character: `re` then skips positions whose character starts no prefix, and at the
    # others tests a handful of branches rather than all of them.
    groups: dict[bytes, list[bytes]] = {}
    for prefixes, body in _PREFIXED:
        for prefix in prefixes.split():
            raw = prefix.encode()
            after = re.escape(raw[1:]) + rb"(?<![%s][\s\S]{%d})" % (_WORD_CHAR, len(raw)) + body
            groups.setdefault(raw[:1], []).append(after)
    tokens = b"|".join(re.escape(first) + b"(?:" + b"|".join(rest) + b")" for first, rest in groups.items())
    # Keys are found in the lowercase copy; each alternative starts with its own literal, so `re` skips the
    # positions that cannot start a keyword.
    keywords = (rb"p(?:ass|wd)", rb"s(?:ecret|ig)", b"token", b"key", b"auth", rb"c(?:ookie|redential)", b"jwt")
    separator = rb"[\w.-]{0,64}+\\{0,7}+['\"]?[ \t]{0,8}+[=:>][ \t]{0,8}+"
    return _Patterns(
        tokens=re.compile(tokens),
        separator=re.compile(r"[\s=:>]"),
        telegram=re.compile(rb"(?<![0-9])[0-9]{8,10}+:AA[0-9A-Za-z_-]{33}(?![0-9A-Za-z_-])"),
        userinfo=re.compile(rb"://[^\s:/?#@'\"<>]{0,256}+:(?P<password>[^\s/?#'\"<>]{1,256})@"),
        pem_begin=re.compile(rb"-----BEGIN [A-Z0-9 ]{0,40}?PRIVATE KEY(?: BLOCK)?-----"),
        keyed=re.compile(b"|".join(keyword + separator for keyword in keywords)),
        key_run=re.compile(rb"[\w.-]*+"),
        scheme_credential=re.compile(rb"b(?:earer|asic)[ \t]{1,8}+([0-9a-z._~+/=-]{8,}+)"),
        flag=re.compile(rb"--(?P<key>[a-z][\w.-]{0,63}+)[ \t]{1,8}+"),
        double_quoted=re.compile(rb'"(?:[^"\\\r\n]|\\.){0,4096}+"'),
        single_quoted=re.compile(rb"'(?:[^'\\\r\n]|\\.){0,4096}+'"),
        escaped_quote=re.compile(rb"\\{1,7}+['\"]"),
        plain_value=re.compile(rb"[^\s'\",;&}]++"),
        xml_value=re.compile(rb"[^<\r\n]{1,4096}+"),
        line_value=re.compile(rb"[^\r\n]{1,4096}+"),
        scheme=re.compile(rb"([a-z][\w-]{0,19}+)[ \t]{1,8}+"),
    )


_KEY_CHARS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_.-")
_AUTH_SCHEMES: Final = frozenset(
    b"bearer basic token digest negotiate ntlm apikey api-key key hmac dpop sso-key sharedkey aws4-hmac-sha256".split()
)


def secret_spans(text: str) -> list[tuple[int, int]]:
    """The `(start, end)` spans of `text` that hold secrets, sorted, possibly overlapping."""
    p = _patterns()
    data = text.encode("ascii", "replace")
    spans: list[tuple[int, int]] = [match.span() for match in p.tokens.finditer(data)]
    if p.separator.search(text) is None:
        return spans  # every other shape needs a space or one of `=`, `:`, `>` (most attribute values have none)
    if b"-----BEGIN" in data:
        spans.extend(_pem_spans(data))
    if b"://" in data:
        spans.extend(match.span("password") for match in p.userinfo.finditer(data))
    if b":AA" in data:
        spans.extend(match.span() for match in p.telegram.finditer(data))
    lowered = data.lower()
    spans.extend(_keyed_spans(text, data, lowered))
    if b"--" in data:
        spans.extend(_flag_spans(text, data, lowered))
    spans.sort()
    return spans


def _pem_spans(data: bytes) -> list[tuple[int, int]]:
    p = _patterns()
    spans: list[tuple[int, int]] = []
    position = 0
    while (begin := p.pem_begin.search(data, position)) is not None:
        end = data.find(b"-----END", begin.end())
        if end < 0:  # a key cut short is still a key
            spans.append((begin.end(), len(data)))
            break
        spans.append((begin.end(), end))
        position = end
    return spans


def _keyed_spans(text: str, data: bytes, lowered: bytes) -> list[tuple[int, int]]:
    p = _patterns()
    spans: list[tuple[int, int]] = []
    done = 0  # end of the last key or value handled: later matches inside it are the same key or hidden already
    key_run = p.key_run.match
    for match in p.keyed.finditer(lowered):
        start, end = match.span()
        if start < done:
            continue
        key_start = _key_start(lowered, start) if start and lowered[start - 1] in _KEY_CHARS else start
        key_end = done = key_run(lowered, start).end()  # pyright: ignore[reportOptionalMemberAccess]
        key = text[key_start:key_end]
        if not _judge(key):  # keys here are at most 128 characters: no need to cut them as is_secret_key does
            continue
        if lowered.endswith(b"://", 0, key_start):
            continue  # `https://x-access-token:<password>@host`: a user name, its password is a URL's (above)
        xml = b">" in lowered[key_end:end]
        if xml and (key_start == 0 or lowered[key_start - 1] != ord("<")):
            continue  # `>` separates an XML element's name from its text, nothing else
        if (span := _value_span(data, lowered, end, key, xml=xml)) is not None:
            spans.append(span)
            done = span[1]
    if b"bearer" in lowered or b"basic" in lowered:
        for match in p.scheme_credential.finditer(lowered):
            if _word_start(lowered, match.start()) and _is_credential(data, match.start(), match.span(1)):
                spans.append(match.span(1))
    return spans


def _flag_spans(text: str, data: bytes, lowered: bytes) -> list[tuple[int, int]]:
    """`--password hunter2` on a command line."""
    p = _patterns()
    spans: list[tuple[int, int]] = []
    done = 0
    for match in p.flag.finditer(lowered):
        if match.start() < done or not _word_start(lowered, match.start()):
            continue
        key = text[match.start("key") : match.end("key")]
        if is_secret_key(key) and (span := _value_span(data, lowered, match.end(), key, xml=False)) is not None:
            spans.append(span)
            done = span[1]
    return spans


def _word_start(lowered: bytes, position: int) -> bool:
    return position == 0 or lowered[position - 1] not in _KEY_CHARS


def _key_start(lowered: bytes, position: int) -> int:
    """Where the key name around `position` starts (at most 64 characters back)."""
    floor = max(0, position - 64)
    while position > floor and lowered[position - 1] in _KEY_CHARS:
        position -= 1
    return position


def _value_span(data: bytes, lowered: bytes, start: int, key: str, *, xml: bool) -> tuple[int, int] | None:
    """Where the value of the secret `key` that starts at `start` ends; None when there is no value to hide."""
    p = _patterns()
    if xml:
        return _matched(p.xml_value, data, start)
    if (escaped := p.escaped_quote.match(data, start)) is not None:
        # JSON inside a string (`{\"password\": \"x\"}`), once or more: the value ends at the same escaped quote.
        closing, opened = escaped.group(), escaped.end()
        end = data.find(closing, opened, opened + 4096)
        if end < 0 or b"\n" in data[opened:end]:
            return _matched(p.plain_value, data, opened)
        return (opened, end) if end > opened else None
    quote = data[start : start + 1]
    if quote in (b'"', b"'"):
        value = (p.double_quoted if quote == b'"' else p.single_quoted).match(data, start)
        if value is None:
            return _matched(p.plain_value, data, start + 1)  # an unclosed quote: hide what follows it
        return (start + 1, value.end() - 1) if value.end() - start > 2 else None
    words = {word.lower() for word in _WORD.findall(key)}
    if words & {"cookie", "cookies"}:
        return _matched(p.line_value, data, start)
    scheme = p.scheme.match(lowered, start) if words & {"auth", "authorization"} else None
    if scheme is not None and scheme.group(1) in _AUTH_SCHEMES:
        start = scheme.end()  # `Authorization: Bearer <hidden>`: the scheme stays readable
    return _matched(p.plain_value, data, start)


def _matched(pattern: re.Pattern[bytes], data: bytes, start: int) -> tuple[int, int] | None:
    value = pattern.match(data, start)
    if value is None or value.group() == b"***":
        return None
    return value.span()


def _is_credential(data: bytes, scheme: int, span: tuple[int, int]) -> bool:
    """Whether the word after `bearer `/`basic ` (which starts at `scheme`) is a credential, not prose.

    A basic credential must decode to `user:password` (`Basic Authentication` is prose). After `Bearer`, as
    HTTP writes it, any word is a token; after a lowercase `bearer`, one with a digit or punctuation, or long.
    """
    credential = data[span[0] : span[1]]
    if data[scheme + 1] in b"aA":
        if len(credential) % 4:
            return False
        import base64  # here: only a `Basic` credential needs it
        import binascii

        try:
            return b":" in base64.b64decode(credential, validate=True)
        except (binascii.Error, ValueError):
            return False
    return data[scheme] == ord("B") or len(credential) >= 20 or not credential.isalpha()
