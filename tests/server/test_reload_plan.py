"""What a reload applies at once and what waits for a restart (`server.io.reload.plan`)."""

from __future__ import annotations

from typing import Any

from hivectl.core.settings import Settings, load_settings
from server.io.reload import changed_keys, plan


def settings(**overrides: Any) -> Settings:
    base = {"auth.secret": "reload-secret-0123456789-abcdefghijklmnop"}
    return load_settings(env={}, overrides={**base, **overrides}).settings


def test_nothing_changed_is_an_empty_plan() -> None:
    running = settings()
    reload = plan(running, settings())
    assert (reload.applied, reload.needs_restart) == ((), ())
    assert reload.effective == running


def test_keys_limits_and_logging_apply_at_once() -> None:
    new = settings(
        **{
            "auth.secret": "another-secret-0123456789-abcdefghijklmnop",
            "limits.messages_per_second": 50,
            "log.level": "debug",
            "server.shutdown_timeout": "3s",
        }
    )
    reload = plan(settings(), new)
    assert set(reload.applied) == {
        "auth.secret",
        "limits.messages_per_second",
        "log.level",
        "server.shutdown_timeout",
    }
    assert reload.needs_restart == ()
    assert reload.effective == new


def test_what_needs_a_restart_keeps_its_running_value() -> None:
    running = settings(**{"server.port": 8765, "storage.backend": "sqlite"})
    new = settings(
        **{
            "server.port": 9000,
            "storage.backend": "memory",
            "presence.grace": "5s",
            "cluster.nats_url": "nats://127.0.0.1:4222",
            "limits.burst": 10,
        }
    )
    reload = plan(running, new)
    assert reload.applied == ("limits.burst",)
    assert set(reload.needs_restart) == {
        "server.port",
        "storage.backend",
        "presence.grace",
        "cluster.nats_url",
    }
    effective = reload.effective
    assert (effective.server.port, effective.storage.backend) == (8765, "sqlite")
    assert (effective.presence, effective.cluster) == (running.presence, running.cluster)
    assert effective.limits.burst == 10


def test_tls_renews_live_but_cannot_be_turned_on_or_off() -> None:
    plain = settings()
    tls = settings(**{"server.tls_cert": "a.pem", "server.tls_key": "a.key"})
    renewed = settings(**{"server.tls_cert": "b.pem", "server.tls_key": "b.key"})
    assert set(plan(tls, renewed).applied) == {"server.tls_cert", "server.tls_key"}
    turned_on = plan(plain, tls)
    assert set(turned_on.needs_restart) == {"server.tls_cert", "server.tls_key"}
    assert turned_on.effective.server.tls_cert == ""


def test_keepalive_interval_changes_but_is_not_switched() -> None:
    running = settings(**{"limits.ping_interval": "10s"})
    assert plan(running, settings(**{"limits.ping_interval": "5s"})).applied == (
        "limits.ping_interval",
    )
    assert plan(running, settings(**{"limits.ping_interval": "0s"})).needs_restart == (
        "limits.ping_interval",
    )


def test_client_settings_are_not_the_servers() -> None:
    new = settings(**{"client.url": "ws://elsewhere:1/ws"})
    assert changed_keys(settings(), new) == ["client.url"]
    assert plan(settings(), new).applied == ()
