"""Backends: one ``Backend`` protocol, an in-memory and a PostGIS implementation."""

from __future__ import annotations

from geosearch.backends.base import Backend, BackendUnavailable, NoDataset
from geosearch.settings import Settings


class UnloadedBackend:
    """Stands in when no dataset exists yet: every call answers NoDataset (HTTP 503)."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __getattr__(self, name: str):
        def unavailable(*_args, **_kwargs):
            raise NoDataset(self.why)

        return unavailable

    def close(self) -> None:
        """Nothing to release."""


def open_backend(settings: Settings) -> Backend:
    """The backend the settings name: PostGIS when ``database_url`` is set, else the
    snapshot (an :class:`UnloadedBackend` when the snapshot does not exist yet)."""
    if settings.database_url:
        from geosearch.backends.postgis import PostgisBackend

        return PostgisBackend.from_settings(settings)
    from geosearch.backends.memory import MemoryBackend
    from geosearch.snapshot import snapshot_file

    if not snapshot_file(settings.snapshot).is_file():
        return UnloadedBackend(f"no snapshot at {settings.snapshot}")
    return MemoryBackend.from_snapshot(settings.snapshot)


__all__ = ["Backend", "BackendUnavailable", "NoDataset", "UnloadedBackend", "open_backend"]
