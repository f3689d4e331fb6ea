"""The one error type of the network code: a LoRA/LyCORIS file or request that cannot be honoured."""

from __future__ import annotations

__all__ = ["NetworkError"]


class NetworkError(ValueError):
    """A network is unknown, unreadable, of an unknown type, or does not fit the model; the message says
    which file or module and what was expected. Nothing stays merged when this is raised."""
