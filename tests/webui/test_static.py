"""The page's files as the server serves them (no browser): mounted at / and /webui/, off with
``webui=False``, behind the API's auth, self-contained (no file from elsewhere), small modules."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from retouch.server import ServerConfig, create_app
from retouch.testing import tiny_model
from retouch.webui import STATIC_DIR

_IMPORT = re.compile(r"""^import .* from "(\./[\w-]+\.js)";$""", re.M)


@pytest.fixture(scope="module")
def model() -> Any:
    return tiny_model(seed=0, family="sd1")


def test_the_page_and_every_module_it_imports_are_served(model: Any) -> None:
    with TestClient(create_app(model, precision="fp32")) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/webui/app.js">' in page.text
        todo, seen = ["app.js"], set()
        while todo:
            name = todo.pop()
            seen.add(name)
            r = client.get(f"/webui/{name}")
            assert r.status_code == 200 and "javascript" in r.headers["content-type"], name
            todo += [m[2:] for m in _IMPORT.findall(r.text) if m[2:] not in seen]
        assert {"api.js", "form.js", "mask.js", "jobs.js", "gallery.js", "attention.js"} <= seen
        assert client.get("/webui/style.css").headers["content-type"].startswith("text/css")
        assert client.get("/webui/nope.js").status_code == 404


def test_the_page_loads_nothing_from_elsewhere_and_its_modules_stay_small() -> None:
    files = sorted(p for p in STATIC_DIR.iterdir() if p.suffix in (".html", ".js", ".css"))
    assert {p.name for p in files} >= {"index.html", "app.js", "style.css"}
    for path in files:
        text = path.read_text()
        assert not re.search(r"(https?:)?//[\w.-]+\.[a-z]{2,}/", text), f"{path.name} refers to another host"
        assert "@import" not in text and len(text.splitlines()) < 400, path.name


def test_no_webui_serves_the_api_only(model: Any) -> None:
    with TestClient(create_app(model, precision="fp32", webui=False)) as client:
        r = client.get("/")
        assert r.status_code == 404 and r.json()["error"] == "HTTPException"
        assert client.get("/webui/app.js").status_code == 404
        assert client.get("/api/v1/fields").status_code == 200


def test_the_page_is_behind_the_same_auth_as_the_api(model: Any) -> None:
    config = ServerConfig(api_auth=(("user", "pass"),))
    with TestClient(create_app(model, precision="fp32", config=config)) as client:
        assert client.get("/").status_code == 401
        assert client.get("/webui/app.js").status_code == 401
        assert client.get("/", auth=("user", "pass")).status_code == 200
