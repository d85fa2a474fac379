"""Conformance of rfobs's telemetry to the OpenTelemetry semantic conventions (GenAI)."""
