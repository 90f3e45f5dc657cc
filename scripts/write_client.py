"""A client of the write API for the scripts that drive it (the bench's writes,
scripts/bench_writes.py; the fault drill under writes, scripts/fault_writes.py): one
keep-alive connection to a server on 127.0.0.1, every request with the key, each answer
read whole, with the revision its ETag names.

    client = WriteClient(port, secret)
    made = client.create(space_feature("Studio 9", 13.38, 52.52, "DE", city="Berlin"))
    client.patch(made.id, made.revision, {"properties": {"capacity": 12}})
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from urllib.parse import quote

MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Answer:
    """One answer: its status (0 when the connection failed: refused, reset, cut short or
    timed out), the revision of its ``ETag`` (None without one), the id its ``Location``
    names (a create's), its body, and ``time.time()`` when it was read."""

    status: int
    revision: int | None
    id: str | None
    body: bytes
    at: float

    @property
    def ok(self) -> bool:
        """Whether it is a 2xx."""
        return 200 <= self.status < 300


def space_feature(name: str, lon: float, lat: float, country: str, **properties: object
                  ) -> dict:
    """A create's body: a Feature with a Point at (lon, lat) and these properties."""
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"name": name, "country": country, **properties}}


def _revision(etag: str | None) -> int | None:
    """The revision of a strong ETag such as ``"3"``."""
    text = (etag or "").strip().strip('"')
    return int(text) if text.isdigit() else None


class WriteClient:
    """Requests with ``Authorization: Bearer <secret>`` on one keep-alive connection,
    opened again after a failure. Not shared between threads: one per thread."""

    def __init__(self, port: int, secret: str, timeout_s: float = 30.0) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._auth = f"Bearer {secret}"
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: object = None,
                headers: dict[str, str] | None = None,
                content_type: str = "application/json") -> Answer:
        """One request (``body`` sent as JSON); its answer."""
        sent = {"Authorization": self._auth, **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = content_type
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                    timeout=self.timeout_s)
        try:
            self._conn.request(method, path, data, sent)
            response = self._conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            return Answer(0, None, None, b"", time.time())
        location = response.getheader("Location")
        return Answer(response.status, _revision(response.getheader("ETag")),
                      location.rsplit("/", 1)[-1] if location else None, payload, time.time())

    def get(self, space_id: str) -> Answer:
        """``GET /v1/spaces/{id}``: the space and its revision."""
        return self.request("GET", f"/v1/spaces/{quote(space_id, safe='')}")

    def create(self, doc: dict) -> Answer:
        """``POST /v1/spaces``."""
        return self.request("POST", "/v1/spaces", doc)

    def patch(self, space_id: str, revision: int, patch: dict) -> Answer:
        """``PATCH /v1/spaces/{id}`` by a JSON Merge Patch, ``If-Match`` the revision."""
        return self.request("PATCH", f"/v1/spaces/{quote(space_id, safe='')}", patch,
                            {"If-Match": f'"{revision}"'}, MERGE_PATCH)

    def changes(self, since: int, limit: int = 1000, wait_s: int = 0
                ) -> tuple[Answer, list[dict], int]:
        """``GET /v1/changes``: the answer, its entries and its ``next_since`` (``since``
        when the answer is not a 200)."""
        answer = self.request("GET", f"/v1/changes?since={since}&limit={limit}&wait={wait_s}")
        if answer.status != 200:
            return answer, [], since
        doc = json.loads(answer.body)
        return answer, doc["changes"], int(doc["next_since"])

    def close(self) -> None:
        """Close the connection (the next request opens another)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
