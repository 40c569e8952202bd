"""The API's one error body (router/api/errors.py), built without HTTP: Starlette's own
errors named, validation errors bounded, and the OpenAPI `responses` of a route."""

from __future__ import annotations

import json

from router.api.errors import (
    MAX_FIELD_ERRORS,
    MAX_FIELD_MESSAGE,
    ErrorBody,
    doc,
    error_response,
    field_errors,
    http_error,
)


def test_the_error_body_has_one_shape():
    r = error_response(429, "rate_limited", "slow down", {"Retry-After": "3"})
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    body = json.loads(r.body)
    assert body == {"error": {"code": "rate_limited", "message": "slow down"}}
    ErrorBody.model_validate(body)
    extra = json.loads(error_response(422, "invalid_request", "x", fields=[]).body)
    assert extra["error"]["fields"] == []


def test_starlettes_errors_get_named_codes():
    assert http_error(404, "Not Found", "GET", "/v1/x") == ("not_found", "no endpoint /v1/x")
    assert http_error(405, "Method Not Allowed", "PUT", "/v1/sessions") == (
        "method_not_allowed",
        "PUT is not allowed on /v1/sessions",
    )
    code, message = http_error(400, "There was an error parsing the body", "POST", "/v1/sessions")
    assert code == "invalid_request" and "parsing the body" in message
    assert http_error(418, "teapot", "GET", "/") == ("http_418", "teapot")


def test_field_errors_are_dotted_and_bounded():
    one = {"loc": ("body", "code"), "msg": "too long", "type": "string_too_long"}
    assert field_errors([one]) == [
        {"loc": "body.code", "message": "too long", "type": "string_too_long"}
    ]
    many = [{"loc": ("body", i), "msg": "x" * 10_000, "type": "t"} for i in range(500)]
    out = field_errors(many)
    assert len(out) == MAX_FIELD_ERRORS
    assert all(len(f["message"]) == MAX_FIELD_MESSAGE for f in out)
    assert field_errors([{}]) == [{"loc": "", "message": "", "type": ""}]


def test_doc_groups_error_codes_by_status():
    got = doc((401, "bad_api_key"), (404, "unknown_session"), (401, "bad_token"))
    assert set(got) == {401, 404}
    assert got[401]["description"] == "error code: bad_api_key, bad_token"
    assert got[404] == {"model": ErrorBody, "description": "error code: unknown_session"}
