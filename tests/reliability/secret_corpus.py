"""Realistic secret shapes, each in the text it typically arrives in, for the scrubbing tests.

The values are fake but well-formed: generated from a fixed seed at import, so the repository holds no
string a secret scanner would take for a live credential, and every run sees the same ones. A leak is any
10-character stretch of a secret (all of it, if shorter) found in an output.
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass

__all__ = ["CORPUS", "NOT_SECRETS", "Shape", "leaked"]

_random = random.Random(9)
_ALNUM = string.ascii_letters + string.digits
_HEX = "0123456789abcdef"
_URLSAFE = _ALNUM + "-_"
_B64 = _ALNUM + "+/"


def _pick(alphabet: str, count: int) -> str:
    return "".join(_random.choice(alphabet) for _ in range(count))


def _b64(size: int) -> str:
    return base64.b64encode(_random.randbytes(size)).decode()


def _urlsafe(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _password() -> str:
    return _pick(string.ascii_letters, 3) + _pick(string.digits, 2) + _pick(_ALNUM, 6) + "!"


@dataclass(frozen=True)
class Shape:
    """One secret and the line it arrives in."""

    name: str
    secret: str
    text: str


def _jwt() -> str:
    header = _urlsafe(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _urlsafe(json.dumps({"sub": _pick(_HEX, 12), "iat": 1_700_000_000}).encode())
    return f"{header}.{payload}.{_urlsafe(_random.randbytes(32))}"


def _pem_body() -> str:
    return "\n".join(_b64(48) for _ in range(6))


def _armored(kind: str, body: str) -> str:
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----"


def _shapes() -> list[Shape]:
    pw, sas_sig, basic_user = _password(), _b64(32), f"svc:{_password()}"
    basic = base64.b64encode(basic_user.encode()).decode()
    secrets = {
        "openai_project": "sk-proj-" + _pick(_URLSAFE, 120),
        "openai_legacy": "sk-" + _pick(_ALNUM, 48),
        "openai_service_account": "sk-svcacct-" + _pick(_URLSAFE, 80),
        "anthropic": "sk-ant-api03-" + _pick(_URLSAFE, 93) + "AA",
        "openrouter": "sk-or-v1-" + _pick(_HEX, 64),
        "google_api_key": "AIza" + _pick(_URLSAFE, 35),
        "google_oauth_client_secret": "GOCSPX-" + _pick(_URLSAFE, 28),
        "google_oauth_access_token": "ya29." + _pick(_URLSAFE, 120),
        "github_classic": "ghp_" + _pick(_ALNUM, 36),
        "github_oauth": "gho_" + _pick(_ALNUM, 36),
        "github_app_in_clone_url": "ghs_" + _pick(_ALNUM, 36),
        "github_fine_grained": "github_pat_" + _pick(_ALNUM, 22) + "_" + _pick(_ALNUM, 59),
        "gitlab": "glpat-" + _pick(_URLSAFE, 20),
        "slack_bot": f"xoxb-{_pick(string.digits, 12)}-{_pick(string.digits, 13)}-{_pick(_ALNUM, 24)}",
        "slack_user": f"xoxp-{_pick(string.digits, 12)}-{_pick(string.digits, 12)}-{_pick(_HEX, 32)}",
        "slack_webhook": f"T{_pick(_ALNUM, 10)}/B{_pick(_ALNUM, 10)}/{_pick(_ALNUM, 24)}",
        "discord_webhook": f"{_pick(string.digits, 18)}/{_pick(_URLSAFE, 68)}",
        "stripe_secret": "sk_live_" + _pick(_ALNUM, 99),
        "stripe_restricted": "rk_live_" + _pick(_ALNUM, 99),
        "stripe_webhook": "whsec_" + _pick(_ALNUM, 32),
        "jwt": _jwt(),
        "basic_auth_header": basic,
        "bearer_header": _pick(_HEX, 40),
        "postgres_url_password": pw,
        "redis_url_password": _password(),
        "mongodb_srv_password": _password(),
        "amqp_url_password": _password(),
        "pem_rsa": _pem_body(),
        "pem_openssh": _pem_body(),
        "pem_pkcs8": _pem_body(),
        "pem_encrypted": _pem_body(),
        "azure_storage_account_key": _b64(64),
        "azure_service_bus_key": _b64(32),
        "azure_sas_signature": sas_sig.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"),
        "huggingface": "hf_" + _pick(_ALNUM, 34),
        "groq": "gsk_" + _pick(_ALNUM, 52),
        "xai": "xai-" + _pick(_ALNUM, 80),
        "perplexity": "pplx-" + _pick(_ALNUM, 48),
        "replicate": "r8_" + _pick(_ALNUM, 37),
        "langsmith": f"lsv2_pt_{_pick(_HEX, 32)}_{_pick(_HEX, 10)}",
        "aws_access_key_id": "AKIA" + _pick(string.ascii_uppercase + string.digits, 16),
        "aws_secret_access_key": _pick(_B64, 40),
        "aws_session_token": _pick(_B64, 300),
        "npm": "npm_" + _pick(_ALNUM, 36),
        "pypi": "pypi-AgEIcHlwaS5vcmc" + _pick(_URLSAFE, 70),
        "sendgrid": f"SG.{_pick(_URLSAFE, 22)}.{_pick(_URLSAFE, 43)}",
        "twilio_auth_token": _pick(_HEX, 32),
        "twilio_api_key": "SK" + _pick(_HEX, 32),
        "mailgun": "key-" + _pick(_ALNUM, 32),
        "digitalocean": "dop_v1_" + _pick(_HEX, 64),
        "shopify": "shpat_" + _pick(_HEX, 32),
        "databricks": "dapi" + _pick(_HEX, 32),
        "vault": "hvs." + _pick(_URLSAFE, 90),
        "telegram_bot": f"{_pick(string.digits, 10)}:AA{_pick(_URLSAFE, 33)}",
        "datadog_api_key": _pick(_HEX, 32),
        "yaml_password": _password(),
        "env_file_password": _password(),
        "json_api_key": _pick(_ALNUM, 32),
        "python_repr_client_secret": _pick(_URLSAFE, 40),
        "cli_flag_password": _password(),
        "cookie_header": _pick(_HEX, 32),
        "x_api_key_header": _pick(_ALNUM, 40),
        "query_access_token": _pick(_URLSAFE, 43),
        "xml_password": _password(),
        "sql_server_connection_password": _password(),
        "escaped_json_password": _password(),
    }
    s = secrets
    texts = {
        "openai_project": f"export OPENAI_API_KEY={s['openai_project']}",
        "openai_legacy": f"openai.AuthenticationError: Incorrect API key provided: {s['openai_legacy']}.",
        "openai_service_account": f"using key {s['openai_service_account']} for batch jobs",
        "anthropic": f'client = Anthropic(api_key="{s["anthropic"]}")',
        "openrouter": f"OPENROUTER key {s['openrouter']} rejected",
        "google_api_key": f"GET https://maps.googleapis.com/maps/api/geocode/json?address=x&key={s['google_api_key']}",
        "google_oauth_client_secret": f'{{"installed": {{"client_secret": "{s["google_oauth_client_secret"]}"}}}}',
        "google_oauth_access_token": f"token refreshed: {s['google_oauth_access_token']}",
        "github_classic": f"git push failed for token {s['github_classic']}",
        "github_oauth": f"gh auth status: logged in with {s['github_oauth']}",
        "github_app_in_clone_url": f"git clone https://x-access-token:{s['github_app_in_clone_url']}@github.com/o/r.git",
        "github_fine_grained": f"GITHUB_TOKEN={s['github_fine_grained']} ./deploy.sh",
        "gitlab": f"curl --header 'PRIVATE-TOKEN: {s['gitlab']}' https://gitlab.example.com/api/v4/projects",
        "slack_bot": f"slack_sdk.errors.SlackApiError: invalid_auth for {s['slack_bot']}",
        "slack_user": f"posting as user {s['slack_user']}",
        "slack_webhook": f"POST https://hooks.slack.com/services/{s['slack_webhook']} returned 404",
        "discord_webhook": f"webhook https://discord.com/api/webhooks/{s['discord_webhook']} is gone",
        "stripe_secret": f"stripe.api_key = '{s['stripe_secret']}'",
        "stripe_restricted": f"Stripe request with {s['stripe_restricted']} was denied",
        "stripe_webhook": f"STRIPE_WEBHOOK_SECRET={s['stripe_webhook']}",
        "jwt": f"decoded session cookie {s['jwt']} expired",
        "basic_auth_header": f"> Authorization: Basic {s['basic_auth_header']}",
        "bearer_header": f"-H 'Authorization: Bearer {s['bearer_header']}'",
        "postgres_url_password": f"could not connect to postgres://app:{s['postgres_url_password']}@db.internal:5432/app",
        "redis_url_password": f"REDIS_URL=redis://:{s['redis_url_password']}@cache:6379/0",
        "mongodb_srv_password": f"mongodb+srv://agent:{s['mongodb_srv_password']}@cluster0.abcde.mongodb.net/db",
        "amqp_url_password": f"broker amqp://guest:{s['amqp_url_password']}@rabbit:5672// unreachable",
        "pem_rsa": f"loaded key:\n{_armored('RSA PRIVATE KEY', s['pem_rsa'])}\n",
        "pem_openssh": _armored("OPENSSH PRIVATE KEY", s["pem_openssh"]),
        "pem_pkcs8": json.dumps({"pem": _armored("PRIVATE KEY", s["pem_pkcs8"])}),
        "pem_encrypted": f"key={_armored('ENCRYPTED PRIVATE KEY', s['pem_encrypted'])}",
        "azure_storage_account_key": "DefaultEndpointsProtocol=https;AccountName=agentdata;"
        f"AccountKey={s['azure_storage_account_key']};EndpointSuffix=core.windows.net",
        "azure_service_bus_key": "Endpoint=sb://agents.servicebus.windows.net/;"
        f"SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={s['azure_service_bus_key']}",
        "azure_sas_signature": "https://agentdata.blob.core.windows.net/c/report.pdf?sv=2022-11-02&ss=b&srt=o"
        f"&sp=r&se=2030-01-01T00:00:00Z&sig={s['azure_sas_signature']}",
        "huggingface": f"HF_TOKEN={s['huggingface']}",
        "groq": f"groq.AuthenticationError: Invalid API Key {s['groq']}",
        "xai": f"XAI key: {s['xai']}",
        "perplexity": f"pplx key {s['perplexity']}",
        "replicate": f"REPLICATE_API_TOKEN={s['replicate']}",
        "langsmith": f"LANGSMITH_API_KEY={s['langsmith']}",
        "aws_access_key_id": f"InvalidClientTokenId: The security token included ({s['aws_access_key_id']}) is invalid",
        "aws_secret_access_key": f"[default]\naws_secret_access_key = {s['aws_secret_access_key']}\n",
        "aws_session_token": f"AWS_SESSION_TOKEN={s['aws_session_token']}",
        "npm": f"//registry.npmjs.org/:_authToken={s['npm']}",
        "pypi": f"twine upload -u __token__ -p {s['pypi']} dist/*",
        "sendgrid": f"sendgrid client key {s['sendgrid']}",
        "twilio_auth_token": f"TWILIO_AUTH_TOKEN={s['twilio_auth_token']}",
        "twilio_api_key": f"twilio api key sid {s['twilio_api_key']}",
        "mailgun": f"mailgun api: {s['mailgun']}",
        "digitalocean": f"doctl auth init -t {s['digitalocean']}",
        "shopify": f"X-Shopify-Access-Token {s['shopify']}",
        "databricks": f"databricks host set, token {s['databricks']}",
        "vault": f"VAULT_TOKEN={s['vault']}",
        "telegram_bot": f"https://api.telegram.org/bot{s['telegram_bot']}/sendMessage",
        "datadog_api_key": f"DD_API_KEY={s['datadog_api_key']}",
        "yaml_password": f"database:\n  user: agent\n  password: {s['yaml_password']}\n",
        "env_file_password": f"DB_PASSWORD={s['env_file_password']}",
        "json_api_key": json.dumps({"model": "gpt-4o", "api_key": s["json_api_key"]}),
        "python_repr_client_secret": repr({"client_id": "agent", "client_secret": s["python_repr_client_secret"]}),
        "cli_flag_password": f"mysql -h db --user agent --password {s['cli_flag_password']} agents",
        "cookie_header": f"Cookie: sessionid={s['cookie_header']}; theme=dark",
        "x_api_key_header": f"X-API-Key: {s['x_api_key_header']}",
        "query_access_token": f"callback https://agent.example.com/cb#access_token={s['query_access_token']}&x=1",
        "xml_password": f"<connection><user>agent</user><password>{s['xml_password']}</password></connection>",
        "sql_server_connection_password": "Server=tcp:agents.database.windows.net,1433;User ID=agent;"
        f"Password={s['sql_server_connection_password']};Encrypt=True;",
        "escaped_json_password": json.dumps(json.dumps({"password": s["escaped_json_password"]})),
    }
    return [Shape(name, secrets[name], texts[name]) for name in secrets]


CORPUS: tuple[Shape, ...] = tuple(_shapes())
"""At least 45 realistic shapes: cloud, source-hosting, payment, messaging and AI-provider keys, JWTs, PEM keys,
URL passwords, connection strings and secret-named values in the formats they are written in."""

NOT_SECRETS: tuple[str, ...] = (
    "session_id=8f14e45f-ceea-4d2b-9f3a-2b1e0c9a7d11",
    "author: Jane Doe",
    "tokenizer=cl100k_base",
    "input_tokens: 1234",
    "max_tokens=256",
    "gen_ai.usage.output_tokens=87",
    "token_count=12",
    "researcher.search failed after 3 attempts",
    "GET https://api.example.com/v1/search?q=llm+agents&page=2 200",
    "basic understanding of the task",
    "the bearer of bad news",
    "password_file=/run/secrets/db",
    "api_key_id=key-ops-2024",
)
"""Text that looks close to a secret and must come out unchanged."""


def leaked(secret: str, output: str) -> bool:
    """Whether any 10-character stretch of `secret` (all of it, if shorter) appears in `output`."""
    width = min(10, len(secret))
    return any(secret[i : i + width] in output for i in range(len(secret) - width + 1))
