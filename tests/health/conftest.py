from tests.health.servers import listener

__all__ = ["listener"]
