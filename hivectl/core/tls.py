"""TLS for deployments without a proxy: the server's context and the clients' trust.

The server keeps one `ssl.SSLContext` for its life; reloading a renewed certificate loads
the new chain into that same context, so connections made from then on get it and live
ones keep theirs. Only TLS 1.2 and later are offered (RFC 8996 deprecates 1.0 and 1.1).

Clients (`watch`, `simulate`, `presence`, the Python client) verify the server against the
system's trust store, or against the CA file an operator names for a private CA
(``[client] ca_file``, ``--ca-file``).
"""

from __future__ import annotations

import ssl


class TlsError(ValueError):
    """A certificate, key or CA file that cannot be used; the text names the file."""


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    reload_certificate(context, cert_file, key_file)
    return context


def reload_certificate(context: ssl.SSLContext, cert_file: str, key_file: str) -> None:
    """Load the chain into `context` (TlsError, with the context unchanged, if unusable)."""
    for path in (cert_file, key_file):
        _check_readable(path)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(
            f"cannot use TLS certificate {cert_file} with key {key_file}: {_reason(exc)}"
        ) from None


def client_context(ca_file: str = "") -> ssl.SSLContext:
    """Verify servers against `ca_file` when given, else against the system's trust store."""
    if ca_file:
        _check_readable(ca_file)
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot use CA file {ca_file}: {_reason(exc)}") from None


def _check_readable(path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TlsError(f"cannot read TLS file {path}: {exc.strerror}") from None


def _reason(exc: OSError | ssl.SSLError) -> str:
    reason = getattr(exc, "reason", None)
    if reason is None and "PEM lib" in str(exc):  # OpenSSL's word for "not PEM as expected"
        return "not a PEM certificate chain and its private key"
    return str(reason or exc.strerror or exc).replace("_", " ").lower()
