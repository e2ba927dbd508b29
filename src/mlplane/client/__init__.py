"""The SDK client and its two transports."""

from mlplane.client.client import Client, make_transport
from mlplane.client.transport import Transport

__all__ = ["Client", "Transport", "make_transport"]
