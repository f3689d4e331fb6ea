"""--api-auth: HTTP Basic on every route, 401 with WWW-Authenticate; parsing of the flag."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from retouch.server.config import ServerConfig, parse_api_auth
from retouch.server.middleware import BasicAuthMiddleware

from .conftest import payload

USERS = (("alice", "s3cret:with:colons"), ("bob", "pw"))


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_auth_off_needs_no_credentials(client: Any) -> None:
    assert client.get("/sdapi/v1/options").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("alice", "wrong"),
        basic("mallory", "pw"),
        basic("bob", "s3cret:with:colons"),  # another user's password
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()},
    ],
)
def test_auth_on_refuses_bad_credentials_on_every_route(make_client: Any, headers: dict[str, str]) -> None:
    client = make_client(api_auth=USERS)
    for method, path in (("GET", "/sdapi/v1/options"), ("POST", "/sdapi/v1/img2img"), ("GET", "/sdapi/v1/progress"),
                         ("POST", "/api/v1/jobs"), ("GET", "/api/v1/jobs/x"), ("GET", "/openapi.json"),
                         ("GET", "/docs")):
        r = client.request(method, path, headers=headers, json=payload() if method == "POST" else None)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Basic"
        assert r.json()["detail"] == "Incorrect username or password"


def test_auth_on_accepts_each_configured_user(make_client: Any) -> None:
    client = make_client(api_auth=USERS)
    for user, password in USERS:
        assert client.get("/sdapi/v1/options", headers=basic(user, password)).status_code == 200
    r = client.post("/sdapi/v1/img2img", json=payload(), headers=basic("bob", "pw"))
    assert r.status_code == 200 and len(r.json()["images"]) == 1


def test_auth_is_checked_before_the_body_is_read(make_client: Any) -> None:
    client = make_client(api_auth=USERS, max_body_bytes=100)
    assert client.post("/sdapi/v1/img2img", json=payload()).status_code == 401  # not 413
    assert client.post("/sdapi/v1/img2img", json=payload(), headers=basic("bob", "pw")).status_code == 413


def test_credential_check_compares_all_pairs() -> None:
    mw = BasicAuthMiddleware(lambda *a: None, USERS)  # type: ignore[arg-type,return-value]
    header = ("Basic " + base64.b64encode(b"alice:s3cret:with:colons").decode()).encode()
    assert mw._authorised(header)
    assert not mw._authorised(header.replace(b"Basic", b"Digest"))
    assert not mw._authorised(None)


def test_parse_api_auth() -> None:
    assert parse_api_auth("u1:p1,u2:p:2") == (("u1", "p1"), ("u2", "p:2"))
    assert parse_api_auth(None) == () and parse_api_auth("") == ()
    for bad, entry in (("nouser", 1), (":hunter2", 1), ("user:", 1), ("a:b,,c:d", 2)):
        with pytest.raises(ValueError, match=f"entry {entry} must look like user:password") as e:
            parse_api_auth(bad)
        assert "hunter2" not in str(e.value)  # never echo a password


def test_server_config_validation() -> None:
    assert ServerConfig().max_queue == 16
    with pytest.raises(ValueError, match="max_queue must be a non-negative number"):
        ServerConfig(max_queue=-1)
    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        ServerConfig(max_steps=0)
    assert ServerConfig(max_job_seconds=None).max_job_seconds is None
