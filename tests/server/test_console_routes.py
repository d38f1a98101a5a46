"""The console's HTTP answers: decided purely (`server.io.console.routes`), sent on the WS port."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from http import HTTPStatus

import pytest

from hivectl.core.settings import SettingsError, load_settings
from server.io.app import HivekitServer
from server.io.console.routes import (
    answer,
    content_security_policy,
    is_console,
    load_files,
    tile_source,
)
from tests.conftest import running

OSM = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
FILES = load_files()
HTML = "text/html; charset=utf-8"
JS = "text/javascript; charset=utf-8"
PNG = "image/png"


def headers(found: object) -> dict[str, str]:
    return dict(found.headers)  # type: ignore[attr-defined]


def test_the_package_ships_the_page_and_leaflet() -> None:
    for name in ("index.html", "console.js", "hivekit.js", "model.js", "admin.js", "console.css"):
        assert FILES[name], name
    assert b"Leaflet 1.9" in FILES["vendor/leaflet/leaflet.js"][:200]
    assert FILES["vendor/leaflet/images/layers.png"].startswith(b"\x89PNG")
    assert not any(name.endswith((".map", "-src.js")) for name in FILES)


def test_the_page_loads_nothing_from_elsewhere() -> None:
    page = FILES["index.html"].decode()
    for source in ('src="', 'href="'):
        for link in page.split(source)[1:]:
            target = link.split('"', 1)[0]
            assert "//" not in target, target
    assert "<style" not in page and " style=" not in page


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [
        ("/console/", "index.html", HTML),
        ("/console/index.html", "index.html", HTML),
        ("/console/console.js", "console.js", JS),
        ("/console/console.css", "console.css", "text/css; charset=utf-8"),
        ("/console/vendor/leaflet/leaflet.js", "vendor/leaflet/leaflet.js", JS),
        ("/console/vendor/leaflet/images/layers.png", "vendor/leaflet/images/layers.png", PNG),
    ],
)
def test_files_are_served_with_their_type(path: str, name: str, content_type: str) -> None:
    found = answer(path, FILES, OSM)
    assert found.status == HTTPStatus.OK
    assert found.content_type == content_type
    assert found.body == FILES[name]
    sent = headers(found)
    assert sent["X-Content-Type-Options"] == "nosniff"
    assert sent["Referrer-Policy"] == "no-referrer"
    assert sent["Content-Security-Policy"] == content_security_policy(OSM)
    vendor = name.startswith("vendor/")
    assert sent["Cache-Control"] == ("public, max-age=3600" if vendor else "no-cache")


def test_the_bare_prefix_redirects_relatively_so_a_proxy_prefix_keeps_working() -> None:
    found = answer("/console", FILES, OSM)
    assert found.status == HTTPStatus.PERMANENT_REDIRECT
    assert headers(found)["Location"] == "console/"


@pytest.mark.parametrize(
    "path",
    [
        "/console/nope.js",
        "/console/vendor/leaflet/leaflet-src.js",
        "/console/vendor/leaflet/leaflet.js.map",
        "/console/../server/app.py",
        "/console/static/index.html",
    ],
)
def test_anything_else_is_not_found(path: str) -> None:
    found = answer(path, FILES, OSM)
    assert found.status == HTTPStatus.NOT_FOUND
    assert found.body == b"not found\n"


def test_config_json_carries_the_tile_url_and_is_never_cached() -> None:
    found = answer("/console/config.json", FILES, "")
    assert json.loads(found.body) == {"tileUrl": ""}
    assert headers(found)["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("tile_url", "source"),
    [
        (OSM, "https://tile.openstreetmap.org"),
        ("https://{s}.tiles.example:8443/{z}/{x}/{y}.png", "https://*.tiles.example:8443"),
        ("http://10.0.0.5/tiles/{z}/{x}/{y}.png", "http://10.0.0.5"),
        ("", ""),
    ],
)
def test_images_are_allowed_from_the_tile_host_only(tile_url: str, source: str) -> None:
    assert tile_source(tile_url) == source
    policy = content_security_policy(tile_url)
    assert f"img-src 'self' data:{' ' + source if source else ''};" in policy
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    assert "connect-src 'self';" in policy
    assert "unsafe" not in policy


def test_is_console_matches_the_prefix_only() -> None:
    assert is_console("/console") and is_console("/console/") and is_console("/console/x.js")
    assert not is_console("/consoles") and not is_console("/ws") and not is_console("/")


@pytest.mark.parametrize(
    "bad",
    [
        "tile.openstreetmap.org/{z}/{x}/{y}.png",
        "https://tiles.example/{z}/{x}.png",
        "https://a.example;script-src *;/{z}/{x}/{y}.png",
        "https://a.example, https://b.example/{z}/{x}/{y}.png",
        "javascript:alert(1)//{z}{x}{y}",
        "ftp://tiles.example/{z}/{x}/{y}.png",
        7,
    ],
)
def test_a_tile_url_that_could_break_the_policy_is_refused(bad: object) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env={}, overrides={"console.tile_url": bad})
    assert '[console].tile_url: expected "" or an http(s) URL with {z}, {x} and {y}' in str(
        caught.value
    )


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


async def test_the_server_serves_the_console_on_the_websocket_port(
    server: HivekitServer,
) -> None:
    base = server.ws_url.removesuffix("/ws").replace("ws://", "http://")
    status, sent, body = await asyncio.to_thread(_get, base + "/console")
    assert status == 200  # urllib followed the redirect to /console/
    assert body == FILES["index.html"]
    assert sent["Content-Type"] == "text/html; charset=utf-8"
    assert sent["Content-Length"] == str(len(body))
    assert sent["Content-Security-Policy"] == content_security_policy(OSM)
    status, sent, body = await asyncio.to_thread(
        _get, base + "/console/vendor/leaflet/images/layers.png"
    )
    assert (status, sent["Content-Type"], body) == (
        200,
        "image/png",
        FILES["vendor/leaflet/images/layers.png"],
    )


async def test_a_disabled_console_is_not_served() -> None:
    async with running({"console.enabled": False}) as server:
        base = server.ws_url.removesuffix("/ws").replace("ws://", "http://")
        status, _, body = await asyncio.to_thread(_get, base + "/console/")
    assert status == 426  # an ordinary WebSocket path: "upgrade required"
    assert b"<html" not in body
