"""Transitional alias of `router/gateway_control.py` (issue 13 renamed it), kept only while
`router/api.py`, which another change splits into a package, still imports it by this name.
Delete this file once the API imports `gateway_control`."""

from .gateway_control import BadReply, NoAnswer, request_drain, valid_gateway_id

__all__ = ["BadReply", "NoAnswer", "request_drain", "valid_gateway_id"]
