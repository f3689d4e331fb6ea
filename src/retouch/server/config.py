"""Server configuration: queue size, result retention and the limits every request is checked against.

A1111 has no limits at all (issue #4); here each one is configurable and has a safe default. The limits
are checked at the server boundary, before a job is queued, so an over-limit request is answered with a
422 that names the limit and never reaches the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["ServerConfig", "parse_api_auth"]


@dataclass(frozen=True)
class ServerConfig:
    """Knobs of one server. Sizes are in pixels (width x height) and bytes; times in seconds.

    * ``max_queue``: jobs waiting behind the running one; one more gets 429 with Retry-After.
    * ``result_ttl_s`` / ``max_results``: how long and how many finished ``/api/v1/jobs`` results stay.
    * ``max_body_bytes``: largest request body (413 above it).
    * ``max_image_pixels``: largest decoded init image or mask.
    * ``max_output_pixels``: largest processing size ``width * height``.
    * ``max_steps``, ``max_batch_size``, ``max_n_iter``: per-request caps.
    * ``max_job_seconds``: a running job is interrupted after this long (None: never), so no request
      can hold the worker indefinitely.
    * ``api_auth``: ``(user, password)`` pairs for HTTP Basic; empty means no authentication.
    * ``styles_file``: an A1111 ``styles.csv`` whose prompt styles requests may name (None: no styles).
    """

    max_queue: int = 16
    result_ttl_s: float = 600.0
    max_results: int = 100
    max_body_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    max_output_pixels: int = 2048 * 2048
    max_steps: int = 150
    max_batch_size: int = 8
    max_n_iter: int = 16
    max_job_seconds: float | None = 3600.0
    api_auth: tuple[tuple[str, str], ...] = ()
    styles_file: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("api_auth", "styles_file") or (f.name == "max_job_seconds" and value is None):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"server setting {f.name} must be a non-negative number; got {value!r}")
        for name in ("max_steps", "max_batch_size", "max_n_iter", "max_image_pixels", "max_output_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"server setting {name} must be at least 1; got {getattr(self, name)!r}")


def parse_api_auth(text: str | None) -> tuple[tuple[str, str], ...]:
    """Parse ``--api-auth "user:pass[,user2:pass2]"`` into pairs (spec §5.1).

    Each entry is split at its first colon, so a user name cannot contain one (a password can). An
    entry without a colon or with an empty user name or password raises ValueError naming the entry's
    position (never its text, which holds a password).
    """
    if not text:
        return ()
    pairs = []
    for i, entry in enumerate(text.split(",")):
        user, sep, password = entry.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError(
                f"--api-auth entry {i + 1} must look like user:password (entries separated by commas)"
            )
        pairs.append((user, password))
    return tuple(pairs)
