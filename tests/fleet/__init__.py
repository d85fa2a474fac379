"""Tests of rfobs.fleet against a real redis-server."""
