"""Decorators that turn agent tasks, tools and API calls into spans and metrics."""

from rfobs.instrument.task import api_call, task, tool, track_agent_task, track_api_call

__all__ = ["api_call", "task", "tool", "track_agent_task", "track_api_call"]
