"""What ``GET /console/...`` answers: a pure function of the path, the files and the tile URL.

The files are read once, when the server starts (`load_files`), so that answering is a
dictionary lookup and testable without sockets. Every answer carries a strict
Content-Security-Policy: scripts, styles and the WebSocket only from the server itself,
images from it and from the configured tile host, nothing inline, no framing. The token
reaches the page in the URL fragment, which browsers never send, so no answer here ever
sees it; ``Referrer-Policy: no-referrer`` keeps the page's address away from the tile host.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from pathlib import Path

import xstatic.pkg.leaflet

PREFIX = "/console"
VENDOR = "vendor/leaflet/"
LEAFLET_FILES = (
    "leaflet.js",
    "leaflet.css",
    "images/layers.png",
    "images/layers-2x.png",
    "images/marker-icon.png",
    "images/marker-icon-2x.png",
    "images/marker-shadow.png",
)
"""What the page may load from Leaflet; its sources and maps stay unserved."""

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Answer:
    status: HTTPStatus
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...]


def load_files() -> dict[str, bytes]:
    """Every file the console serves, by its path under ``/console/``."""
    files: dict[str, bytes] = {}
    static = resources.files(__package__).joinpath("static")
    for entry in static.iterdir():
        if entry.is_file() and Path(entry.name).suffix in _TYPES:
            files[entry.name] = entry.read_bytes()
    leaflet = Path(xstatic.pkg.leaflet.BASE_DIR)
    for name in LEAFLET_FILES:
        files[VENDOR + name] = (leaflet / name).read_bytes()
    return files


def tile_source(tile_url: str) -> str:
    """The CSP source that allows images from the tile host: ``{s}`` subdomains become ``*``;
    nothing for no tiles."""
    found = re.match(r"https?://[^/]+", tile_url)
    return found[0].replace("{s}", "*") if found else ""


def content_security_policy(tile_url: str) -> str:
    images = " ".join(filter(None, ("'self'", "data:", tile_source(tile_url))))
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def answer(path: str, files: dict[str, bytes], tile_url: str) -> Answer:
    """The answer to ``GET path`` (query string removed) for a path under `PREFIX`."""
    security = (
        ("Content-Security-Policy", content_security_policy(tile_url)),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    )
    if path == PREFIX:
        # Relative, so the page's relative links work behind a proxy that adds a prefix.
        return Answer(
            HTTPStatus.PERMANENT_REDIRECT,
            _TYPES[".html"],
            b"",
            (("Location", "console/"), ("Cache-Control", "no-cache"), *security),
        )
    name = path[len(PREFIX) + 1 :] or "index.html"
    if name == "config.json":
        body = json.dumps({"tileUrl": tile_url}).encode()
        return Answer(
            HTTPStatus.OK, _TYPES[".json"], body, (("Cache-Control", "no-store"), *security)
        )
    body_or_none = files.get(name)
    if body_or_none is None:
        return Answer(
            HTTPStatus.NOT_FOUND,
            "text/plain; charset=utf-8",
            b"not found\n",
            (("Cache-Control", "no-cache"), *security),
        )
    # Leaflet changes only with the package; the console's own files with every release.
    cache = "public, max-age=3600" if name.startswith(VENDOR) else "no-cache"
    return Answer(
        HTTPStatus.OK,
        _TYPES[Path(name).suffix],
        body_or_none,
        (("Cache-Control", cache), *security),
    )
