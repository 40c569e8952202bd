"""How a component proves itself to NATS and checks the server: a user and password, TLS.

Both NATS clients take one `NatsSecurity`: the gateway's own trio client (nats_client.py) for
the data path and nats-py (nats_bridge.py) for management. The values come from files (a
mounted Secret in k8s, throwaway files in `router up --secure`), named by the
COBROWSE_NATS_* variables, so no password is ever on a command line or in `ps`.

`load` is the only I/O here (it reads the password file once, at start); the rest turns the
loaded values into what each client needs: CONNECT fields, an `ssl.SSLContext`, nats-py's
keyword arguments.
"""

from __future__ import annotations

import ssl
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # settings imports streams, which imports the client that imports this
    from .settings import NatsAuthVars


class NatsSecurityError(ValueError):
    """A credentials or certificate file cannot be used; the message names the variable
    (the components report it with their bad settings, exit status 2)."""


@dataclass(frozen=True)
class NatsSecurity:
    """What to send in CONNECT and how to wrap the socket. All None: plain NATS, no auth."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None  # set: TLS is required, the server's certificate verified
    cert_file: str | None = None  # with key_file: a client certificate (mutual TLS)
    key_file: str | None = None

    @property
    def tls(self) -> bool:
        """TLS is configured: a server that does not offer it is refused (no credentials
        go over plain TCP)."""
        return self.ca_file is not None

    def connect_fields(self) -> dict[str, str]:
        """The CONNECT fields that carry the credentials."""
        if self.user is None:
            return {}
        return {"user": self.user, "pass": self.password or ""}

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: TLS 1.2 or later, the server's certificate checked against
        `ca_file` (the system's CAs without one) and its host name against the URL's."""
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.cert_file is not None:
                ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise NatsSecurityError(
                f"COBROWSE_NATS_TLS_CA/_CERT/_KEY: the NATS TLS files cannot be used: {exc}"
            ) from None
        return ctx

    def nats_py_options(self) -> dict[str, Any]:
        """Keyword arguments for `nats.connect` with the same credentials and TLS."""
        opts: dict[str, Any] = {}
        if self.user is not None:
            opts["user"], opts["password"] = self.user, self.password or ""
        if self.tls:
            opts["tls"] = self.ssl_context()
        return opts


def load(
    *,
    user: str | None,
    password_file: str | None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> NatsSecurity:
    """Read the password file (its first line; a trailing newline, as `echo` leaves one, is
    not part of it) and check that the TLS files open. `NatsSecurityError` names the
    variable whose file is wrong, never the password."""
    password = None
    if password_file is not None:
        try:
            text = Path(password_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise NatsSecurityError(
                f"COBROWSE_NATS_PASSWORD_FILE={password_file} cannot be read: {exc}"
            ) from None
        password = text.splitlines()[0] if text.strip() else ""
        if not password:
            raise NatsSecurityError(f"COBROWSE_NATS_PASSWORD_FILE={password_file} is empty")
    got = NatsSecurity(user, password, ca_file, cert_file, key_file)
    if got.tls:
        got.ssl_context()  # fail at start, not at the first connect
    return got


def from_settings(got: NatsAuthVars) -> NatsSecurity:
    """`load` with the variables a component read."""
    return load(**asdict(got))
