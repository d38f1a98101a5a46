"""NATS URLs shown in logs and ``cluster status`` never carry the configured password."""

from __future__ import annotations

from urllib.parse import urlparse

from server.cluster.urls import server_url, shown_urls


def test_credentials_are_dropped_and_host_and_port_kept() -> None:
    assert server_url(urlparse("nats://app:s3cret@10.0.0.5:4222")) == "nats://10.0.0.5:4222"
    assert server_url(urlparse("tls://token@nats.example")) == "tls://nats.example"
    assert server_url(urlparse("nats://[::1]:4222")) == "nats://[::1]:4222"


def test_a_list_of_servers_is_shown_server_by_server() -> None:
    shown = shown_urls(" nats://a:pw@one:4222, nats://two:4223 ,")
    assert shown == "nats://one:4222,nats://two:4223"
    assert "pw" not in shown
