"""The private CA and server certificate of the TLS tests, for the proxies in front."""

from tests.cli.test_tls import Pki, pki

__all__ = ["Pki", "pki"]
