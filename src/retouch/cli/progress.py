"""Progress display and Ctrl-C handling for the generating commands (issue #5).

On a terminal, one self-rewriting status line on stderr: a bar, the image count, the sampler step and
the ETA. When stderr is not a terminal (logs, pipes, tests), plain lines instead, at most one per
``interval`` seconds plus the last step of every batch. Saved paths and messages always go to stdout as
whole lines, so scripts can read them.

The ETA follows A1111's progress arithmetic (spec §5.6): the fraction done is
``(finished batches + step / steps) / total batches``, and ``eta = elapsed / fraction - elapsed``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TextIO

__all__ = ["Progress", "StopFlag", "catch_interrupt", "format_duration"]

_BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    """``"1:02:03"`` / ``"2:03"`` style duration, rounded to whole seconds."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress over ``total_batches`` sampler runs holding ``total_images`` images in all.

    Call :meth:`start_batch` before each batch, :meth:`step` from the engine's ``on_step`` hook, and
    :meth:`finish_batch` after it. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        total_batches: int,
        total_images: int,
        *,
        err: TextIO | None = None,
        out: TextIO | None = None,
        tty: bool | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.err = err if err is not None else sys.stderr
        self.out = out if out is not None else sys.stdout
        self.tty = bool(tty if tty is not None else getattr(self.err, "isatty", lambda: False)())
        self.total_batches = max(1, total_batches)
        self.total_images = total_images
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.batches_done = 0
        self.images_done = 0
        self.batch_images = 0
        self._last_plain = -float("inf")
        self._line_open = False

    def fraction(self, step: int = 0, steps: int = 0) -> float:
        part = step / steps if steps > 0 else 0.0
        return min(1.0, (self.batches_done + part) / self.total_batches)

    def eta(self, fraction: float) -> float | None:
        if fraction <= 0:
            return None
        elapsed = self.clock() - self.started
        return elapsed / fraction - elapsed

    def start_batch(self, images: int) -> None:
        self.batch_images = images

    def step(self, step: int, steps: int) -> None:
        """Report sampler step ``step`` of ``steps`` in the current batch."""
        frac = self.fraction(step, steps)
        eta = self.eta(frac)
        eta_text = "ETA --:--" if eta is None else f"ETA {format_duration(eta)}"
        first = self.images_done + 1
        last = min(self.total_images, self.images_done + max(1, self.batch_images))
        images = (
            f"image {first}/{self.total_images}"
            if first == last
            else f"images {first}-{last}/{self.total_images}"
        )
        if self.tty:
            filled = round(frac * _BAR_WIDTH)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            self.err.write(f"\r[{bar}] {frac:4.0%} {images} step {step}/{steps} {eta_text}\x1b[K")
            self.err.flush()
            self._line_open = True
            return
        now = self.clock()
        if step == steps or now - self._last_plain >= self.interval:
            self._last_plain = now
            self.err.write(f"{images}: step {step}/{steps} ({frac:.0%}, {eta_text})\n")
            self.err.flush()

    def finish_batch(self, images: int) -> None:
        self.batches_done += 1
        self.images_done += images

    def message(self, text: str, *, err: bool = False) -> None:
        """Print one whole line (stdout, or stderr with ``err``), clearing a status line first."""
        self._clear()
        stream = self.err if err else self.out
        stream.write(text + "\n")
        stream.flush()

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self._line_open:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._line_open = False


class StopFlag:
    """Set by the first Ctrl-C; read by the engine through ``should_stop``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


@contextlib.contextmanager
def catch_interrupt(flag: StopFlag, notify: Callable[[str], None]) -> Iterator[StopFlag]:
    """While active, the first Ctrl-C sets ``flag`` (the engine stops within one step and the current
    image is discarded); a second Ctrl-C raises KeyboardInterrupt at once. Outside the main thread no
    handler can be installed and Ctrl-C keeps its default behaviour."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag():
            raise KeyboardInterrupt
        flag.set()
        notify("Interrupted: stopping after the current step (press Ctrl-C again to abort at once)")

    try:
        previous: Any = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
