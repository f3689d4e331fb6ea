"""The server decodes a live preview only when a client asks for one (issue #17 item 4)."""

from __future__ import annotations

from typing import Any

from retouch.engine import Engine

from .conftest import payload


class CountingPreviews:
    """An engine whose ``preview`` calls are counted (a wrapper passed in, nothing patched)."""

    def __init__(self, inner: Engine) -> None:
        self.inner, self.model, self.previews = inner, inner.model, 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.run(*args, **kwargs)

    def preview(self, denoised: Any) -> Any:
        self.previews += 1
        return self.inner.preview(denoised)


def test_no_preview_is_decoded_when_no_client_asks(make_client: Any, engine: Engine) -> None:
    counting = CountingPreviews(engine)
    client = make_client(counting)
    client.post("/sdapi/v1/options", json={"show_progress_every_n_steps": 1})
    r = client.post("/sdapi/v1/img2img", json=payload(steps=6, denoising_strength=1.0))
    assert r.status_code == 200, r.text
    assert counting.previews == 0
