"""NATS server URLs as shown to people: in log lines and ``hivectl cluster status``.

A ``cluster.nats_url`` may carry a user and password (``nats://app:secret@host:4222``);
whatever a node prints about its servers goes through here so the secret never does.
"""

from __future__ import annotations

from urllib.parse import ParseResult, urlparse


def server_url(url: ParseResult) -> str:
    """A server's URL without the credentials it may have been configured with."""
    host = url.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{host}{port}"


def shown_urls(configured: str) -> str:
    """``cluster.nats_url`` (one URL or several, comma-separated) without credentials."""
    urls = [url.strip() for url in configured.split(",") if url.strip()]
    return ",".join(server_url(urlparse(url)) for url in urls)
