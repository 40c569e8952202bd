"""Signed asset URLs (guarantee G4, the proxy is not an open proxy): proxy/signing.py."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.tokens import Keyring
from proxy.signing import ASSET_PATH, SignatureError, sign, sign_params, verify

SECRET = b"s" * 32
OTHER = b"o" * 32
URL = "https://cdn.example.com/css/site.css?v=3&x=a b"
SID = "sess-123"
EXP = 1_700_000_100
NOW = 1_700_000_000.0


def query_of(path: str) -> dict[str, list[str]]:
    parts = urlsplit(path)
    assert parts.path == ASSET_PATH
    return parse_qs(parts.query, keep_blank_values=True)


def signed(**overrides) -> dict[str, str]:
    q = sign_params(SECRET, URL, SID, EXP)
    q.update(overrides)
    return q


def test_round_trip_through_the_url():
    path = sign(SECRET, URL, SID, EXP)
    assert path.startswith(ASSET_PATH + "?")
    assert verify(SECRET, query_of(path), NOW) == (URL, SID)
    assert verify(SECRET, query_of(path), NOW, session_id=SID) == (URL, SID)


def test_round_trip_with_plain_dict():
    assert verify(SECRET, signed(), NOW) == (URL, SID)


def test_signature_is_deterministic_and_secret_dependent():
    assert sign(SECRET, URL, SID, EXP) == sign(SECRET, URL, SID, EXP)
    assert sign(SECRET, URL, SID, EXP) != sign(OTHER, URL, SID, EXP)


@pytest.mark.parametrize("missing", ["u", "s", "e", "sig"])
def test_missing_part(missing):
    q = signed()
    del q[missing]
    with pytest.raises(SignatureError) as e:
        verify(SECRET, q, NOW)
    assert e.value.code == "missing_param"


def _b64(s: str) -> str:
    import base64

    return base64.urlsafe_b64encode(s.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "field, value",
    [
        ("u", _b64("https://cdn.example.com/css/evil.css")),
        ("u", _b64("http://169.254.169.254/latest/meta-data/")),
        ("u", _b64(URL + "x")),
        ("s", "sess-124"),
        ("s", SID + " "),
        ("e", str(EXP + 1)),
        ("e", str(EXP * 10)),
        ("e", str(EXP - 1)),
    ],
)
def test_tampering_with_a_signed_field_breaks_the_signature(field, value):
    with pytest.raises(SignatureError) as e:
        verify(SECRET, signed(**{field: value}), NOW)
    assert e.value.code == "bad_signature"


def test_tampered_signature_bytes():
    good = signed()["sig"]
    for i in range(len(good)):
        flipped = good[:i] + ("A" if good[i] != "A" else "B") + good[i + 1 :]
        with pytest.raises(SignatureError) as e:
            verify(SECRET, signed(sig=flipped), NOW)
        assert e.value.code == "bad_signature"


@pytest.mark.parametrize(
    "field, value, code",
    [
        ("sig", "", "bad_signature"),
        ("sig", "abc", "bad_signature"),
        ("sig", "!" * 43, "bad_signature"),
        ("u", "", "bad_param"),
        ("u", "!!!", "bad_param"),
        ("u", "a", "bad_param"),
        ("u", "_w", "bad_param"),  # 0xff: not UTF-8
        ("e", "", "bad_param"),
        ("e", "-1", "bad_param"),
        ("e", "+1700000100", "bad_param"),
        ("e", "1e9", "bad_param"),
        ("e", " 1700000100", "bad_param"),
        ("e", "9" * 40, "bad_param"),
        ("s", "", "bad_param"),
    ],
)
def test_malformed_parts(field, value, code):
    with pytest.raises(SignatureError) as e:
        verify(SECRET, signed(**{field: value}), NOW)
    assert e.value.code == code


def test_wrong_secret():
    with pytest.raises(SignatureError) as e:
        verify(OTHER, signed(), NOW)
    assert e.value.code == "bad_signature"


def test_repeated_parameter_is_refused():
    q = {k: [v] for k, v in signed().items()}
    q["u"] = q["u"] + [_b64("http://127.0.0.1/")]
    with pytest.raises(SignatureError) as e:
        verify(SECRET, q, NOW)
    assert e.value.code == "bad_param"


def test_expiry():
    assert verify(SECRET, signed(), EXP - 0.001) == (URL, SID)
    for now in (EXP, EXP + 0.5, EXP + 10**6):
        with pytest.raises(SignatureError) as e:
            verify(SECRET, signed(), now)
        assert e.value.code == "expired"


def test_wrong_session_when_caller_pins_it():
    with pytest.raises(SignatureError) as e:
        verify(SECRET, signed(), NOW, session_id="someone-else")
    assert e.value.code == "wrong_session"


def test_key_rotation():
    old = Keyring.parse("k1:" + "a" * 32)
    rotated = Keyring.parse("k2:" + "b" * 32 + ",k1:" + "a" * 32)
    retired = Keyring.parse("k2:" + "b" * 32)
    minted_before = sign(old, URL, SID, EXP)
    minted_after = sign(rotated, URL, SID, EXP)
    assert minted_before != minted_after
    # During the rotation both verify; after the old key is retired only the new one.
    assert verify(rotated, query_of(minted_before), NOW) == (URL, SID)
    assert verify(rotated, query_of(minted_after), NOW) == (URL, SID)
    assert verify(retired, query_of(minted_after), NOW) == (URL, SID)
    with pytest.raises(SignatureError):
        verify(retired, query_of(minted_before), NOW)
    # The previous-only key never signs, and a bare secret interoperates with a keyring.
    with pytest.raises(SignatureError):
        verify(old, query_of(minted_after), NOW)
    assert verify(b"a" * 32, query_of(minted_before), NOW) == (URL, SID)


@pytest.mark.parametrize(
    "args",
    [
        (b"short", URL, SID, EXP),
        (SECRET, "", SID, EXP),
        (SECRET, URL, "", EXP),
        (SECRET, URL, SID, -1),
        (SECRET, URL, SID, 1.5),
        (SECRET, URL, SID, True),
        (SECRET, "x" * 9000, SID, EXP),
    ],
)
def test_sign_rejects_bad_input(args):
    with pytest.raises(ValueError):
        sign(*args)


def test_fields_cannot_bleed_into_each_other():
    # Moving characters between the URL and the session id must not keep the MAC valid.
    a = sign_params(SECRET, "https://a.example/x", "yz", EXP)
    b = sign_params(SECRET, "https://a.example/xy", "z", EXP)
    assert a["sig"] != b["sig"]
    with pytest.raises(SignatureError):
        verify(SECRET, {**a, "u": b["u"], "s": b["s"]}, NOW)


urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
    st.text(max_size=200),
)
session_ids = st.text(min_size=1, max_size=64)


@given(urls, session_ids, st.integers(min_value=1, max_value=10**11))
def test_round_trip_random(url, sid, exp):
    path = sign(SECRET, url, sid, exp)
    assert verify(SECRET, query_of(path), exp - 1) == (url, sid)
    with pytest.raises(SignatureError):
        verify(SECRET, query_of(path), exp)


@given(urls, session_ids, urls, session_ids)
def test_random_tampering_is_detected(url, sid, url2, sid2):
    q = sign_params(SECRET, url, sid, EXP)
    forged = sign_params(SECRET, url2, sid2, EXP)
    if (url, sid) == (url2, sid2):
        return
    # Any field swapped in from another signed URL, signature kept: refused.
    mixed = {**q, "u": forged["u"], "s": forged["s"]}
    with pytest.raises(SignatureError):
        verify(SECRET, mixed, NOW)
    # Signed with another secret: refused.
    with pytest.raises(SignatureError):
        verify(SECRET, sign_params(OTHER, url, sid, EXP), NOW)


@given(st.dictionaries(st.sampled_from(["u", "s", "e", "sig", "x"]), st.text(max_size=60)))
def test_verify_never_crashes_on_garbage(q):
    with pytest.raises(SignatureError):
        verify(SECRET, q, NOW)
