"""A secure local NATS (`router up --secure`, the tests): a throwaway CA, a server
certificate, a user per component with only the subjects it needs, and the nats-server
configuration that requires all of it, for clients and between cluster routes.

The certificates come from the `openssl` command (in every Debian image and on this machine),
not the `cryptography` package: that would be a compiled dependency the components never use,
for a development convenience. `PERMISSIONS` is the one statement of what each component may
publish and subscribe to; k8s/base/config/nats.conf grants the same (tests/k8s checks it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CERT_DAYS = 30  # a development CA: long enough for a working month, then made again
LOCAL_NAMES = ("DNS:localhost", "IP:127.0.0.1")
# The names k8s clients and routes use (namespace cobrowse): the client Service, and each
# server by the headless Service (the routes in k8s/overlays/prod/nats.conf).
K8S_NAMES = tuple(
    f"DNS:{name}{suffix}"
    for name in ("cobrowse-nats", "*.cobrowse-nats-headless")
    for suffix in ("", ".cobrowse", ".cobrowse.svc", ".cobrowse.svc.cluster.local")
)

# What each component's NATS user may do. The gateway publishes events and control messages,
# reads and writes through JetStream and KV, answers drain requests (to the asker's inbox)
# receives its acks on _CBACK and JetStream's stream-leader advisories (to retry a publish in
# flight as soon as a new leader is elected); it may not delete or purge a stream. The router manages
# KV and the stream (it purges a session's events when the session is ended through the
# API), sends drain requests and a session's end; it receives only replies.
PERMISSIONS: dict[str, dict[str, dict[str, list[str]]]] = {
    "gateway": {
        "publish": {
            "allow": ["cb.>", "$JS.API.>", "$KV.>", "_INBOX.>"],
            "deny": ["$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>"],
        },
        "subscribe": {
            "allow": [
                "cb.>",
                "_INBOX.>",
                "_CBACK.>",
                "cobrowse.admin.drain.>",
                "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.>",
            ]
        },
    },
    "router": {
        "publish": {
            "allow": ["cb.*.ctl", "$JS.API.>", "$KV.>", "cobrowse.admin.drain.>"],
            "deny": ["$JS.API.STREAM.DELETE.>"],
        },
        "subscribe": {"allow": ["_INBOX.>"]},
    },
}


class OpensslMissing(RuntimeError):
    """`router up --secure` needs the openssl command."""


@dataclass(frozen=True)
class SecureNats:
    """The files of a secure NATS, all in `dir` (mode 0700), named as the k8s Secrets'
    keys are (cobrowse-nats-tls: ca.crt, tls.crt, tls.key; cobrowse-nats-auth:
    <user>-password), so `kubectl create secret generic --from-file` takes them as they are."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.dir / "tls.crt"

    @property
    def key(self) -> Path:
        return self.dir / "tls.key"

    def password_file(self, user: str) -> Path:
        return self.dir / f"{user}-password"

    def client_env(self, user: str) -> dict[str, str]:
        """The COBROWSE_NATS_* variables with which a component connects as `user`."""
        return {
            "COBROWSE_NATS_USER": user,
            "COBROWSE_NATS_PASSWORD_FILE": str(self.password_file(user)),
            "COBROWSE_NATS_TLS_CA": str(self.ca),
        }

    def server_config(self, cluster: str | None = None) -> str:
        """nats-server configuration text: TLS for clients (and for the routes of `cluster`,
        a rendered `cluster { ... }` body's name/listen/routes lines) and the users."""
        tls = (
            f"  cert_file: {json.dumps(str(self.cert))}\n"
            f"  key_file: {json.dumps(str(self.key))}\n"
            f"  ca_file: {json.dumps(str(self.ca))}\n"
            "  timeout: 2\n"
        )
        users = []
        for user, perms in PERMISSIONS.items():
            password = self.password_file(user).read_text().strip()
            users.append(
                f"    {{user: {json.dumps(user)}, password: {json.dumps(password)}, "
                f"permissions: {json.dumps(perms)}}}\n"
            )
        text = f"tls {{\n{tls}}}\nauthorization {{\n  users: [\n{''.join(users)}  ]\n}}\n"
        if cluster is not None:
            # Routes verify each other's certificate (the server certificate is also a client
            # certificate): no process without the CA's signature joins the cluster.
            text += f"cluster {{\n{cluster}  tls {{\n{tls}    verify: true\n  }}\n}}\n"
        return text


def make(dir: Path, names: tuple[str, ...] = LOCAL_NAMES, days: int = CERT_DAYS) -> SecureNats:
    """A fresh CA, a server certificate for `names` (openssl subjectAltName entries; it is
    also the routes' client certificate), and a password per user, in `dir` (readable by
    this user only)."""
    if shutil.which("openssl") is None:
        raise OpensslMissing("`router up --secure` needs the openssl command (apt install openssl)")
    dir.mkdir(parents=True, exist_ok=True)
    os.chmod(dir, 0o700)
    got = SecureNats(dir)
    ext = dir / "server.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        f"subjectAltName={','.join(names)}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", dir / "ca-key.pem", "-out", got.ca,
        "-days", days, "-subj", "/CN=cobrowse NATS CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", got.key, "-out", dir / "server.csr", "-subj", "/CN=cobrowse-nats"
    )
    _openssl(
        "x509", "-req", "-in", dir / "server.csr", "-CA", got.ca, "-CAkey", dir / "ca-key.pem",
        "-CAcreateserial", "-out", got.cert, "-days", days, "-extfile", ext,
    )  # fmt: skip
    for user in PERMISSIONS:
        path = got.password_file(user)
        path.write_text(secrets.token_urlsafe(24) + "\n")
        os.chmod(path, 0o600)
    for path in (dir / "ca-key.pem", got.key):
        os.chmod(path, 0o600)
    return got


def kubectl_commands(got: SecureNats, namespace: str = "cobrowse") -> str:
    """How an operator turns `got` into the two Secrets (docs/operations.md)."""
    users = " ".join(f"--from-file={got.password_file(u)}" for u in PERMISSIONS)
    return (
        f"kubectl -n {namespace} create secret generic cobrowse-nats-tls "
        f"--from-file={got.ca} --from-file={got.cert} --from-file={got.key}\n"
        f"kubectl -n {namespace} create secret generic cobrowse-nats-auth {users}\n"
        f"# keep {got.dir / 'ca-key.pem'} offline (it signs the next certificate); "
        "the rest can be deleted once the Secrets exist"
    )


def _openssl(*args: object) -> None:
    r = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )
    if r.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {r.stderr.strip()[-500:]}")
