"""The write API and the change feed, over PostGIS: ``POST /spaces``, ``PUT``, ``PATCH``
and ``DELETE /spaces/<id>``, ``GET /changes``.

Views read the request (the key's scope, ``If-Match``, a bounded strict JSON body) and
ask :class:`geosearch.writes.LiveStore`; its verdicts are answered here: 422 listing
each bad field as a JSON Pointer, 404, 409 naming the existing space, 412 naming the
current revision. A server over a snapshot takes no write: :func:`read_only_blueprint`
answers the same routes 405, saying that writes need a database. Either way the app's
answers to OPTIONS say what the write routes take, and leave out of ``Allow`` the methods
a read-only server refuses (:func:`described`).
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, request
from flask.sansio.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter

from geosearch import changes
from geosearch.api.auth import require
from geosearch.api.consistency import TOKEN_HEADER, token
from geosearch.api.errors import ApiError, ParamError, problem
from geosearch.api.geojson import GEOJSON, JsonError, read_json
from geosearch.api.guard import register
from geosearch.api.openapi import (
    OBJECT,
    UNAVAILABLE,
    Operation,
    add_route,
    body,
    ref,
)
from geosearch.api.openapi import problem as problem_doc
from geosearch.api.params import Param, Params, integer, query_args
from geosearch.api.search import SPACE_ID, SPACE_RULE, etag, request_body, space_id_converter
from geosearch.livespace import Invalid
from geosearch.writes import Conflict, IfMatch, LiveStore, NotFound, Stale, Written

BODY_TYPES = (GEOJSON, "application/json")
MERGE_PATCH = "application/merge-patch+json"
WRITE_METHODS = ("PUT", "PATCH", "DELETE")  # on a space's own path (POST: on the spaces')
# A space's body: a Feature of a few fields (the polygon body's reading, smaller bounds)
MAX_SPACE_BODY_BYTES = 65_536
MAX_SPACE_DEPTH = 8
MAX_SPACE_CONTAINERS = 100
# If-Match: at most this many entity tags
MAX_IF_MATCH_TAGS = 20
_ENTITY_TAG = re.compile(r'\s*(?:(W/)?"([\x21\x23-\x7e]*)")\s*')
# The opaque tag of a revision as an ETag writes it: another spelling of the number
# ("01", "+1") is another entity tag, which never matches (a strong comparison)
_REVISION_TAG = re.compile(r"0|[1-9][0-9]{0,17}")
# app.extensions: endpoint -> what an answer to OPTIONS says of it (:func:`described`)
DESCRIBED = "geosearch.described"
READ_ONLY = ("this server serves a read-only snapshot: writes need a PostGIS database "
             "(geosearch serve --database URL)")

SINCE: Param[int] = Param("since", integer(0, changes.MAX_SEQ),
                          "Entries after this seq (the next_since of the last answer)", 0)
FEED_LIMIT: Param[int] = Param("limit", integer(1, changes.MAX_LIMIT), "Entries at most",
                               changes.DEFAULT_LIMIT)
WAIT: Param[int] = Param("wait", integer(0, changes.MAX_WAIT_S),
                         "Seconds to wait for a change when there is none yet", 0)

_SPACE = body(GEOJSON, ref("Space"), "The space as it is served")
_WRITE_ERRORS = {
    "401": problem_doc("No key, or a key that is unknown or revoked"),
    "403": problem_doc("The key does not have the scope write"),
    "415": problem_doc("The body's Content-Type"),
    "422": problem_doc("The space is invalid: each bad field named as a JSON Pointer"),
    "429": problem_doc("Over the key's write limit"), **UNAVAILABLE}
_PRECONDITION = {"412": problem_doc("If-Match names another revision (current_revision)"),
                 "428": problem_doc("If-Match is required"),
                 "404": problem_doc("No active space has this id")}


# what the answer of a write says: the space's new revision, the write's seq
_WRITTEN = {"ETag": True, "X-Consistency-Token": True}


def _request_body(media_types: tuple[str, ...]) -> dict:
    return {"required": True, "content": {m: {"schema": OBJECT} for m in media_types}}


CREATE = Operation("Create a space (201, Location, ETag)", _SPACE, (),
                   {**_WRITE_ERRORS, "409": problem_doc("The id is taken, or the space "
                                                        "repeats an active one (existing_id)")},
                   "A GeoJSON Feature (a Point and the space's properties) or the "
                   "properties alone (then geocoded); id optional.", _request_body(BODY_TYPES),
                   "201", {"Location": True, **_WRITTEN})
REPLACE = Operation("Replace a space (If-Match)", _SPACE, (SPACE_ID,),
                    {**_WRITE_ERRORS, **_PRECONDITION}, "", _request_body(BODY_TYPES),
                    headers=_WRITTEN)
PATCH = Operation("Change a space by a JSON Merge Patch (If-Match)", _SPACE, (SPACE_ID,),
                  {**_WRITE_ERRORS, **_PRECONDITION}, "RFC 7396",
                  _request_body((MERGE_PATCH,)), headers=_WRITTEN)
CLOSE = Operation("Close a space (If-Match): it leaves every read, its history stays",
                  {"description": "Closed"}, (SPACE_ID,), {**_WRITE_ERRORS, **_PRECONDITION},
                  status="204", headers=_WRITTEN)
FEED = Operation(
    "The change feed: every committed change in seq order, with the next since",
    body("application/json", {
        "type": "object", "required": ["changes", "next_since"],
        "properties": {"changes": {"type": "array", "items": OBJECT},
                       "next_since": {"type": "integer", "minimum": 0}}}, "Entries"),
    (SINCE, FEED_LIMIT, WAIT),
    {"401": problem_doc("No key, or a key that is unknown or revoked"),
     "403": problem_doc("The key does not have the scope changes"), **UNAVAILABLE})


def if_match() -> IfMatch:
    """The request's ``If-Match``: 428 without one, 400 when it is not a list of entity
    tags. A weak tag never matches (RFC 9110 compares If-Match strongly)."""
    header = request.headers.get("If-Match")
    if header is None:
        raise ApiError(428, "Precondition Required", "this write needs If-Match with the "
                       "space's ETag (GET it first)",
                       [ParamError("If-Match", "required: the ETag of the space")])
    if header.strip() == "*":
        return IfMatch(any=True)
    tags = header.split(",")
    parsed = [_ENTITY_TAG.fullmatch(tag) for tag in tags]
    if len(tags) > MAX_IF_MATCH_TAGS or not all(parsed):
        raise ApiError.bad_params([ParamError(
            "If-Match", f'"*" or at most {MAX_IF_MATCH_TAGS} entity tags such as "3"')])
    return IfMatch(frozenset(int(m.group(2)) for m in parsed
                             if m and not m.group(1) and _REVISION_TAG.fullmatch(m.group(2))))


def _space(written: Written, status: int = 200) -> Response:
    response = Response(written.feature, status=status, mimetype=GEOJSON)
    response.headers["ETag"] = etag(written.revision)
    response.headers[TOKEN_HEADER] = token(written.seq)
    return response


def _actor() -> str:
    return str(g.actor)


class WriteViews:
    """The views of the write API and the change feed, bound to a LiveStore.

    How a view reads its body and its precondition are methods, so that a mount with
    other rules (:class:`geosearch.api.ogc.ItemWriteViews`) overrides only those."""

    def __init__(self, live: LiveStore) -> None:
        self.live = live

    def body(self, media_types: tuple[str, ...]) -> object:
        """The body as strict, bounded JSON (415 without a Content-Type, 413, 400)."""
        if not request.mimetype:
            raise ApiError(415, "Unsupported Media Type", f"send {' or '.join(media_types)}",
                           [ParamError("Content-Type", f"one of {', '.join(media_types)}")])
        data = request_body(MAX_SPACE_BODY_BYTES, media_types)
        try:
            return read_json(data, MAX_SPACE_DEPTH, MAX_SPACE_CONTAINERS)
        except JsonError as exc:
            raise ApiError.bad_params([ParamError("body", str(exc))]) from None

    def precondition(self, id: str) -> IfMatch:
        """The precondition of a write to the space ``id``: :func:`if_match`."""
        return if_match()

    def create(self) -> Response:
        """POST /spaces"""
        written = self.live.create(self.body(BODY_TYPES), _actor())
        response = _space(written, 201)
        response.headers["Location"] = (f"{request.script_root}{request.path.rstrip('/')}/"
                                        f"{quote(written.id, safe='')}")
        return response

    def replace(self, id: str) -> Response:
        """PUT /spaces/<id>"""
        precondition = self.precondition(id)
        return _space(self.live.replace(id, self.body(BODY_TYPES), precondition, _actor()))

    def patch(self, id: str) -> Response:
        """PATCH /spaces/<id>"""
        precondition = self.precondition(id)
        return _space(self.live.patch(id, self.body((MERGE_PATCH,)), precondition,
                                      _actor()))

    def close(self, id: str) -> Response:
        """DELETE /spaces/<id>"""
        written = self.live.close_space(id, self.precondition(id), _actor())
        return Response(status=204, headers={"ETag": etag(written.revision),
                                             TOKEN_HEADER: token(written.seq)})

    def feed(self) -> Response:
        """GET /changes"""
        p = Params.read(query_args(), FEED.params).check()
        entries = self.live.feed(p[SINCE], p[FEED_LIMIT], p[WAIT])
        next_since = entries[-1].seq if entries else p[SINCE]
        data = (b'{"changes":[' + b",".join(e.json() for e in entries)
                + b'],"next_since":' + str(next_since).encode() + b"}")
        return Response(data, mimetype="application/json")


def _invalid(exc: Invalid) -> Response:
    return problem(422, "Unprocessable Content", "the space is not valid: "
                   f"{len(exc.errors)} field(s) to fix",
                   [ParamError(where, what) for where, what in exc.errors])


def _not_found(exc: NotFound) -> Response:
    return problem(404, "Not Found", f"no active space has the id {str(exc)!r}")


def _stale(exc: Stale) -> Response:
    return problem(412, "Precondition Failed", f"the space is at revision {exc.revision}: "
                   "GET it again and write against that", [ParamError(
                       "If-Match", f"the current ETag is {etag(exc.revision)}")],
                   {"ETag": etag(exc.revision)}, {"current_revision": exc.revision})


def _conflict(exc: Conflict) -> Response:
    return problem(409, "Conflict", exc.reason, extra={"existing_id": exc.existing})


def add_write_routes(bp: Blueprint, views: WriteViews, items: str, item: str,
                     id_param: Param[str] = SPACE_ID) -> None:
    """Serve the writes of ``views`` on ``bp``, each for a key with the scope write:
    POST ``items`` creates; PUT, PATCH and DELETE ``item`` (a rule with ``<id>``,
    documented as ``id_param``) replace, patch and close. The store's verdicts are
    answered by ``bp`` (422, 404, 409, 412)."""
    write = require("write")
    add_route(bp, items, "create", write(views.create), CREATE, ("POST",))
    for endpoint, view, operation, method in (("replace", views.replace, REPLACE, "PUT"),
                                              ("patch", views.patch, PATCH, "PATCH"),
                                              ("close", views.close, CLOSE, "DELETE")):
        add_route(bp, item, endpoint, write(view),
                  dataclasses.replace(operation, params=(id_param,)), (method,))
    bp.register_error_handler(Invalid, _invalid)
    bp.register_error_handler(NotFound, _not_found)
    bp.register_error_handler(Stale, _stale)
    bp.register_error_handler(Conflict, _conflict)
    _describe(bp, {"create": ("Accept-Post", ", ".join(BODY_TYPES)),
                   "patch": ("Accept-Patch", MERGE_PATCH)})


def add_read_only_routes(bp: Blueprint, items: str, item: str) -> None:
    """The write routes of a server over a snapshot: each answers 405, with ``Allow``
    naming what the path serves, and says that writes need a database; an answer to
    OPTIONS does not name the methods they refuse."""
    add_route(bp, items, "create", _refuse, None, ("POST",))
    add_route(bp, item, "write", _refuse, None, WRITE_METHODS)
    _describe(bp, {"create": None, "write": None})


def _refuse(**_: str) -> Response:
    raise ApiError(405, "Method Not Allowed", READ_ONLY, headers={"Allow": "GET, HEAD, OPTIONS"})


def _describe(bp: Blueprint, endpoints: dict[str, tuple[str, str] | None]) -> None:
    """Have the app's answers to OPTIONS tell of ``bp``'s ``endpoints`` (by the names it
    gives them): None, a route that refuses its methods; (header, media types), a route
    that takes a body of those types. The app gets :func:`described` once."""
    def record(state: BlueprintSetupState) -> None:
        known = state.app.extensions.get(DESCRIBED)
        if known is None:
            known = state.app.extensions[DESCRIBED] = {}
            state.app.after_request(described)
        prefix = f"{state.name_prefix}.{state.name}.".lstrip(".")
        known.update({prefix + name: what for name, what in endpoints.items()})

    bp.record_once(record)


def _endpoint(adapter: MapAdapter, method: str) -> str | None:
    """The endpoint that serves ``method`` on the request's path (None: none)."""
    try:
        return str(adapter.match(method=method)[0])
    except HTTPException:  # not served, or served elsewhere (a redirect)
        return None


def described(response: Response) -> Response:
    """An ``after_request`` hook: an answer to OPTIONS names in ``Allow`` only the methods
    that work on the path (Flask names every method of every route that matches it, the
    refusals of a read-only server's write routes too), and for a write route that takes
    a body, its media types (``Accept-Post``, ``Accept-Patch``)."""
    if request.method != "OPTIONS" or "Allow" not in response.headers:
        return response
    known: dict[str, tuple[str, str] | None] = current_app.extensions[DESCRIBED]
    adapter = current_app.create_url_adapter(request)
    allowed = []
    for method in (m.strip() for m in response.headers["Allow"].split(",")):
        endpoint = _endpoint(adapter, method) if adapter is not None else None
        if method != "OPTIONS" and endpoint in known and known[endpoint] is None:
            continue
        allowed.append(method)
        if (body := known.get(endpoint or "")) is not None:
            response.headers[body[0]] = body[1]
    response.headers["Allow"] = ", ".join(allowed)
    return response


def writes_blueprint(live: LiveStore, name: str = "writes") -> Blueprint:
    """The write routes and the change feed over ``live``; mounted where the search
    blueprint is (``/v1``)."""
    bp = Blueprint(name, __name__)
    views = WriteViews(live)
    space_id_converter(bp)
    add_write_routes(bp, views, "/spaces", SPACE_RULE)
    add_route(bp, "/changes", "changes", require("changes")(views.feed), FEED)
    register(bp, app_wide=False)
    return bp


def read_only_blueprint(name: str = "writes") -> Blueprint:
    """The write routes of /v1 on a server over a snapshot (:func:`add_read_only_routes`)."""
    bp = Blueprint(name, __name__)
    space_id_converter(bp)
    add_read_only_routes(bp, "/spaces", SPACE_RULE)
    register(bp, app_wide=False)
    return bp
