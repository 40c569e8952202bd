"""NATS with authentication and TLS (gateway/nats_security.py, router/nats_secure.py): both
clients against a real nats-server that requires a user per component and TLS."""

from __future__ import annotations

import socket
import ssl
import subprocess

import pytest
import structlog
import trio

from gateway import settings as s
from gateway.config import parse_args
from gateway.nats_bridge import open_bridge
from gateway.nats_client import NatsClient, NoServersAvailable
from gateway.nats_security import NatsSecurity, NatsSecurityError, load
from router import nats_secure, natsproc
from tests.gateway.test_nats_client import Inbox, restart_same_port
from tests.support.keys import TEST_KEYS

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """A throwaway CA and users, and one nats-server requiring them (shared: making the
    certificates and starting the server is most of these tests' time)."""
    base = tmp_path_factory.mktemp("secure-nats")
    files = nats_secure.make(base / "tls")
    srv = natsproc.start_single(base / "nats", secure=files)
    yield files, srv
    srv.stop()


def as_user(files: nats_secure.SecureNats, user: str) -> NatsSecurity:
    return load(user=user, password_file=str(files.password_file(user)), ca_file=str(files.ca))


# ---- settings (no server) --------------------------------------------------------------------


def test_the_user_and_password_file_and_the_cert_and_key_go_together():
    env = {"COBROWSE_TOKEN_KEYS": TEST_KEYS.token_keys}
    for alone, missing in (
        ("COBROWSE_NATS_USER", "COBROWSE_NATS_PASSWORD_FILE"),
        ("COBROWSE_NATS_PASSWORD_FILE", "COBROWSE_NATS_USER"),
        ("COBROWSE_NATS_TLS_CERT", "COBROWSE_NATS_TLS_KEY"),
        ("COBROWSE_NATS_TLS_KEY", "COBROWSE_NATS_TLS_CERT"),
    ):
        with pytest.raises(s.SettingsError) as err:
            s.read(s.GatewaySettings, {**env, alone: "/x"})
        assert err.value.problems == (f"{missing} is not set, but {alone} is (they go together)",)


def test_a_password_file_that_is_missing_or_empty_stops_the_gateway_with_its_name(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, says in ((tmp_path / "none", "cannot be read"), (empty, "is empty")):
        env = {
            "COBROWSE_TOKEN_KEYS": TEST_KEYS.token_keys,
            "COBROWSE_NATS_USER": "gateway",
            "COBROWSE_NATS_PASSWORD_FILE": str(path),
        }
        with pytest.raises(SystemExit) as exit_:
            parse_args([], env)
        assert exit_.value.code == 2
        assert f"COBROWSE_NATS_PASSWORD_FILE={path} {says}" in capsys.readouterr().err


def test_the_password_is_the_files_first_line_and_never_in_repr(tmp_path):
    path = tmp_path / "pw"
    path.write_text("s3cret-pass\n")
    got = load(user="gateway", password_file=str(path))
    assert got.connect_fields() == {"user": "gateway", "pass": "s3cret-pass"}
    assert "s3cret" not in repr(got) and not got.tls
    with pytest.raises(NatsSecurityError, match="COBROWSE_NATS_TLS_CA"):
        load(user=None, password_file=None, ca_file=str(tmp_path / "no-ca.pem"))


# ---- the trio client ---------------------------------------------------------------------------


async def test_wrong_or_missing_credentials_or_trust_are_refused_with_a_clear_error(secure):
    files, srv = secure
    good = as_user(files, "gateway")
    cases = {
        "a wrong password": (NatsSecurity("gateway", "wrong", str(files.ca)), "Authorization"),
        "no user": (NatsSecurity(ca_file=str(files.ca)), "Authorization Violation"),
        "an unknown CA": (NatsSecurity("gateway", good.password), "certificate verify failed"),
    }
    for case, (security, says) in cases.items():
        with trio.fail_after(10), pytest.raises(NoServersAvailable, match=says):
            async with NatsClient.open(srv.url, security=security):
                pytest.fail(f"connected with {case}")


async def test_a_client_with_a_ca_never_sends_its_password_to_a_server_without_tls(
    secure, nats_server
):
    files, _ = secure
    with trio.fail_after(10), pytest.raises(NoServersAvailable, match="does not offer TLS"):
        async with NatsClient.open(nats_server.url, security=as_user(files, "gateway")):
            pass


async def test_pub_sub_request_permissions_and_a_reconnect_over_tls(secure):
    """Payloads over many TLS records arrive whole and in order; a subject outside a
    user's permissions is refused by the server; after a restart of the server the client
    reconnects through TLS and auth again and its subscription works."""
    files, srv = secure
    with structlog.testing.capture_logs() as logs, trio.fail_after(40):
        async with (
            NatsClient.open(srv.url, security=as_user(files, "gateway"), reconnect_wait=0.05) as gw,
            NatsClient.open(srv.url, security=as_user(files, "router")) as router,
        ):
            inbox = Inbox()
            gw.subscribe("cb.s1.v", inbox)
            gw.subscribe("cobrowse.admin.drain.gw-1", lambda m: gw.publish(m.reply, b"ok"))
            await gw.flush()
            # 512 KiB, 32 TLS records each; 8 MiB in one turn fill the kernel's buffer, so
            # the outbox meets the TLS socket's "not now" (SSLWantWriteError) and waits.
            big = bytes(range(256)) * 2048
            for i in range(16):
                gw.publish("cb.s1.v", b"%x" % i + big)
            router.publish("cb.s1.v", b"router may not")  # only cb.*.ctl
            reply = await router.request("cobrowse.admin.drain.gw-1", b"", timeout=5)
            await router.flush()
            msgs = await inbox.wait_for(16)
            assert reply.data == b"ok" and gw.stats.reconnects == 0
            assert [m.data[:1] for m in msgs] == [b"%x" % i for i in range(16)]
            assert all(m.data[1:] == big for m in msgs)

            lost, back = trio.Event(), trio.Event()
            gw.on_disconnected(lost.set)
            gw.on_reconnected(back.set)
            await trio.to_thread.run_sync(srv.kill)
            await lost.wait()
            await restart_same_port(srv)
            await back.wait()
            gw.publish("cb.s1.v", b"after")
            assert (await inbox.wait_for(17))[16].data == b"after"
    assert len(inbox.msgs) == 17  # the router's publish never arrived (it would be 17th)
    refused = [e for e in logs if e["event"] == "nats_error"]
    assert any('Permissions Violation for Publish to "cb.s1.v"' in e["error"] for e in refused)


# ---- nats-py (management) ----------------------------------------------------------------------


async def test_the_management_client_connects_with_the_same_settings(secure):
    files, srv = secure
    with trio.fail_after(20):
        async with open_bridge(srv.url, security=as_user(files, "router")) as bridge:
            assert bridge.connected
            kv = await bridge.call(bridge.js.create_key_value, bucket="cobrowse_sec_test")
            await bridge.call(kv.put, "k", b"v")
            assert (await bridge.call(kv.get, "k")).value == b"v"


def _route_hello(port: int, files: nats_secure.SecureNats, with_cert: bool) -> bytes:
    """What a route port says to a TLS client (with or without the CA-signed certificate)."""
    ctx = ssl.create_default_context(cafile=str(files.ca))
    if with_cert:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.settimeout(5)
            return tls.recv(5)


async def test_a_secure_cluster_routes_over_verified_tls_and_clients_move_between_nodes(
    secure, tmp_path
):
    """Routes require TLS with a certificate each side verifies; a message crosses the
    cluster; a client whose node dies moves to a node it learned from INFO, with the same
    TLS and credentials."""
    files, _ = secure
    servers = await trio.to_thread.run_sync(
        lambda: natsproc.start_cluster(tmp_path / "nats", 3, secure=files)
    )
    try:
        port = servers[0].cluster_port
        assert _route_hello(port, files, with_cert=True) == b"INFO "
        with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
            _route_hello(port, files, with_cert=False)
        gw = as_user(files, "gateway")
        with trio.fail_after(30):
            async with (
                NatsClient.open(servers[0].url, security=gw, reconnect_wait=0.05) as a,
                NatsClient.open(servers[2].url, security=gw) as b,
            ):
                inbox = Inbox()
                b.subscribe("cb.c.v", inbox)
                await b.flush()
                while not inbox.msgs:  # until the subscription has crossed the routes
                    a.publish("cb.c.v", b"across")
                    await a.flush()
                    await trio.sleep(0.05)
                back = trio.Event()
                a.on_reconnected(back.set)
                await trio.to_thread.run_sync(servers[0].kill)
                await back.wait()
                assert a.connected_url != servers[0].url
                # Core NATS is at most once, and the routes re-form after a node dies: a
                # message may be dropped meanwhile (CI saw one lost), so publish until one
                # crosses, as for "across" above.
                with trio.fail_after(10):
                    while not any(m.data == b"moved" for m in inbox.msgs):
                        a.publish("cb.c.v", b"moved")
                        await a.flush()
                        await trio.sleep(0.05)
    finally:
        for s in servers:
            s.stop()


def test_nats_secrets_makes_the_k8s_secrets_files_for_the_service_names(tmp_path, capsys):
    from router.__main__ import main

    out = tmp_path / "secrets"
    assert main(["nats-secrets", "--out", str(out), "--days", "2"]) == 0
    printed = capsys.readouterr().out
    assert "create secret generic cobrowse-nats-tls" in printed
    assert "create secret generic cobrowse-nats-auth" in printed
    got = nats_secure.SecureNats(out)
    for user in nats_secure.PERMISSIONS:
        assert len(as_user(got, user).password) >= 32
    ctx = ssl.create_default_context(cafile=str(got.ca))
    ctx.load_cert_chain(str(got.cert), str(got.key))  # the key matches the certificate
    sans = subprocess.run(
        ["openssl", "x509", "-in", str(got.cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    assert "DNS:cobrowse-nats," in sans and "DNS:*.cobrowse-nats-headless," in sans
    assert main(["nats-secrets", "--out", str(out)]) == 2  # never over existing files
