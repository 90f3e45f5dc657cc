"""Checks every request passes before any view sees it.

Limits on the request line and the headers (the server's own limits are raised so that
these answer, in problem+json), and text that no parameter or path of the API can hold:
control characters (NUL included) and percent-escapes that are not UTF-8. A value that
passes here may still be refused by its parameter's own parser; one that fails never
reaches a backend (PostgreSQL refuses NUL in text, for one).

:func:`register` installs the checks on an app or a blueprint, with the problem handlers
(:mod:`geosearch.api.errors`) that answer what they and the views raise.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from flask import Blueprint, Flask, request

from geosearch.api.errors import ApiError, ParamError, register_handlers

MAX_REQUEST_LINE_BYTES = 8192
MAX_HEADER_BYTES = 8192
MAX_HEADERS_TOTAL_BYTES = 32768
# C0 controls, DEL and C1 controls: no name, address, id or number contains them.
CONTROL_CHARS = r"\x00-\x1f\x7f-\x9f"
_CONTROL = re.compile(f"[{CONTROL_CHARS}]")
# The characters a query string holds as themselves: made only of these, it has nothing
# encoded and splits as it stands (geosearch.api.params.query_args reads it so).
_LITERAL = r"A-Za-z0-9_.,=&:;\-~!*'()/?@"
UNENCODED_QUERY = re.compile(f"[{_LITERAL}]*")
# "+" is encoded (a space) so it cannot be read as it stands, but the space it stands for
# is clean text: a query string of these needs no decoding to pass the checks.
_CLEAN_QUERY = re.compile(f"[{_LITERAL}+]*")
GUARDED = "geosearch.guarded"  # an app whose every request passes the guard


def _bad_text(raw: bytes) -> str | None:
    """Why ``raw`` (percent-decoded bytes) cannot be a parameter value, or None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8 (check the percent-escapes)"
    if _CONTROL.search(text):
        return "control characters (such as NUL) are not allowed"
    return None


def _query_bytes(component: str) -> bytes:
    """The bytes a query component stands for: WSGI passes the request's bytes as
    latin-1 text (a raw byte 0xE9 is "\xe9", not UTF-8 "é"); ``+`` is a space."""
    return unquote_to_bytes(component.replace("+", " ").encode("latin-1", "replace"))


def check_query(query_string: str) -> None:
    """Raise a 400 naming each query parameter whose name or value is unusable text."""
    if _CLEAN_QUERY.fullmatch(query_string):
        return
    errors: list[ParamError] = []
    for pair in query_string.split("&"):
        name_raw, _, value_raw = pair.partition("=")
        name_bytes = _query_bytes(name_raw)
        name = name_bytes.decode("utf-8", "replace")
        problem = _bad_text(name_bytes)
        if problem is not None:
            errors.append(ParamError(_CONTROL.sub("?", name) or "?", f"name: {problem}"))
            continue
        problem = _bad_text(_query_bytes(value_raw))
        if problem is not None:
            errors.append(ParamError(name, problem))
    if errors:
        raise ApiError.bad_params(errors)


def check_path(path_info: str) -> None:
    """Raise a 400 when the (percent-decoded) path is not clean UTF-8 text."""
    if path_info.isascii() and not _CONTROL.search(path_info):
        return
    problem = _bad_text(path_info.encode("latin-1", "replace"))
    if problem is not None:
        raise ApiError.bad_params([ParamError("path", problem)])


def check_sizes(environ: dict) -> None:
    """Raise 414 for an over-long request line, 431 for oversized headers."""
    uri = environ.get("RAW_URI") or (environ.get("PATH_INFO", "") + "?"
                                     + environ.get("QUERY_STRING", ""))
    if len(uri) > MAX_REQUEST_LINE_BYTES:
        raise ApiError(414, "URI Too Long",
                       f"the request target is {len(uri)} bytes; at most "
                       f"{MAX_REQUEST_LINE_BYTES} are accepted (send a polygon in a POST "
                       "body instead)", [ParamError("uri", f"at most {MAX_REQUEST_LINE_BYTES} "
                                                            "bytes")])
    total = 0
    for key, value in environ.items():
        if not key.startswith("HTTP_") or not isinstance(value, str):
            continue
        size = len(key) + len(value)
        total += size
        if size > MAX_HEADER_BYTES:
            name = key[5:].replace("_", "-").title()
            raise ApiError(431, "Request Header Fields Too Large",
                           f"the {name} header is {size} bytes; at most {MAX_HEADER_BYTES} "
                           "are accepted", [ParamError(name, f"at most {MAX_HEADER_BYTES} "
                                                             "bytes")])
    if total > MAX_HEADERS_TOTAL_BYTES:
        raise ApiError(431, "Request Header Fields Too Large",
                       f"the headers are {total} bytes; at most {MAX_HEADERS_TOTAL_BYTES} are "
                       "accepted", [ParamError("headers", f"at most {MAX_HEADERS_TOTAL_BYTES} "
                                                          "bytes in all")])


def check_request(environ: dict) -> None:
    """Every check of this module on one WSGI request."""
    check_sizes(environ)
    check_path(environ.get("PATH_INFO", ""))
    check_query(environ.get("QUERY_STRING", ""))


def _guard() -> None:
    check_request(request.environ)


def register(target: Flask | Blueprint, app_wide: bool = True) -> None:
    """Check every request to ``target`` (an app, or a blueprint's own routes) and answer
    errors as problem+json (``app_wide``: Werkzeug's and unexpected ones too,
    :func:`geosearch.api.errors.register_handlers`)."""
    if isinstance(target, Flask):
        target.before_request(_guard)
        target.extensions[GUARDED] = True
    else:  # a blueprint guards its own routes, unless the app already guards them all
        target.record_once(lambda state: None if state.app.extensions.get(GUARDED) else
                           state.app.before_request_funcs.setdefault(state.name, [])
                           .append(_guard))
    register_handlers(target, app_wide)
