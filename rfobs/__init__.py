"""rfobs: OpenTelemetry observability for Python AI agents.

Call `rfobs.init()` once at start-up; decorate agent tasks, tools and API calls; see traces with
`rfobs traces` and metrics on `http://127.0.0.1:9464/metrics`.
"""

from rfobs._settings_model import Settings
from rfobs._version import __version__
from rfobs.config import load_config
from rfobs.exceptions import ConfigError, RfobsError
from rfobs.instrument import api_call, task, tool, track_agent_task, track_api_call
from rfobs.logs import setup_logging, setup_structured_logging
from rfobs.sdk import Telemetry, get_settings, init, shutdown

__all__ = [
    "ConfigError",
    "RfobsError",
    "Settings",
    "Telemetry",
    "__version__",
    "api_call",
    "get_settings",
    "init",
    "load_config",
    "setup_logging",
    "setup_structured_logging",
    "shutdown",
    "task",
    "tool",
    "track_agent_task",
    "track_api_call",
]
