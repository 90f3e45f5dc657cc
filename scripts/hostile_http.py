"""Send the hostile battery (geosearch.testing.hostile) to a running service over HTTP.

    python scripts/hostile_http.py http://127.0.0.1:8000

Every response must be a 2xx, or a 4xx problem+json that leaks no stack trace or SQL;
the service must still answer a search afterwards. Exit status 1 when one does not.
"""

from __future__ import annotations

import http.client
import sys
from urllib.parse import unquote, urlsplit

from geosearch.testing import hostile


def send(base: str, probe: hostile.Probe) -> tuple[int, str, str]:
    """One probe on its own connection: (status, content type, body text)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
    try:
        conn.request(probe.method, parts.path.rstrip("/") + probe.url, body=probe.body,
                     headers=probe.headers)
        resp = conn.getresponse()
        return (resp.status, resp.headers.get("Content-Type", ""),
                resp.read().decode("utf-8", "replace"))
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    base = argv[0] if argv else "http://127.0.0.1:8000"
    failures, count = [], 0
    for probe in hostile.battery():
        count += 1
        status, kind, text = send(base, probe)
        found = hostile.problems_with(status, kind, text, unquote(probe.url))
        if found:
            failures.append(f"{probe.method} {probe.url[:100]}: {', '.join(found)}")
    status, _, _ = send(base, hostile.Probe("GET", "/v1/spaces?limit=1"))
    if status != 200:
        failures.append(f"the service answers {status} after the battery")
    print(f"{count} hostile requests, {len(failures)} problems")
    print("\n".join(failures[:50]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
