"""The function the parent hands to each child process, light to import.

The parent pickles ``child.run_task`` by name; importing this module costs nothing, and the heavy
``tasks`` module it calls is already loaded in the fork server that the child was forked from. So the
parent never imports diffusers' pipelines or Retouch's engine itself.
"""

from __future__ import annotations

from typing import Any


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one benchmark task in this (child) process; see ``tasks.run_task``."""
    import tasks

    return tasks.run_task(task)
