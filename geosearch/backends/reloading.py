"""A snapshot served from its file and reloaded, without a restart, when the file is
replaced.

``geosearch ingest --snapshot PATH`` writes the new snapshot beside the old one and renames
it over PATH (:func:`geosearch.snapshot.write_snapshot`), so PATH names another file at
once, whole. Each process that serves it (every gunicorn worker) looks at the file's
identity (inode, modification time, size: one ``stat``) at most once per ``CHECK_S``, at
a read. When it changed, a thread of the operating system loads the new file (under
gevent a greenlet would hold the worker for the whole load) while the old snapshot goes
on answering; the first read after the load swaps the new one in (one reference). A
request answers from the snapshot it began with (:meth:`.readscope.ReadScope.pin`), so
no request mixes two; a cursor from the old dataset is then answered 410, as after any
new dataset.

A file that cannot be loaded (not a snapshot, copied by hand and still incomplete) is
logged, and the old snapshot kept, until the file changes again. The processes load
each its own copy: the memory they shared from before the fork is not shared for a
reloaded dataset.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geosearch.backends import UnloadedBackend, readscope
from geosearch.backends.base import Backend
from geosearch.backends.memory import MemoryBackend
from geosearch.snapshot import SnapshotError, serving_table, snapshot_file

CHECK_S = 1.0
Identity = tuple[int, int, int]  # st_ino, st_mtime_ns, st_size
log = logging.getLogger(__name__)


def _identity(stat: os.stat_result) -> Identity:
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _load(file: Path) -> tuple[Identity, Backend]:
    """The snapshot now at ``file`` and the identity of the file it was read from."""
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise SnapshotError(f"{file}: cannot read the snapshot ({exc})") from None
    with handle:
        table, meta = serving_table(handle)
        identity = _identity(os.fstat(handle.fileno()))
    return identity, MemoryBackend(table, str(meta.get("dataset_version", "unknown")))


def _in_os_thread(target: Callable[..., None], *args: object) -> None:
    """Run ``target(*args)`` on a thread of the operating system, even where gevent has
    made ``threading`` start greenlets."""
    from gevent import monkey

    start_new_thread = monkey.get_original("_thread", "start_new_thread")
    start_new_thread(target, args)


class ReloadingSnapshot:
    """The snapshot at ``path`` (a file, or a folder holding ``spaces.parquet``) as a
    :class:`~geosearch.backends.base.Backend`, reloaded when the file is replaced; NoDataset
    (HTTP 503) while no snapshot was ever there. Every method of the protocol is the one
    of the snapshot serving the current request."""

    def __init__(self, path: str | Path) -> None:
        self.file = snapshot_file(path)
        self._backend: Backend = UnloadedBackend(f"no snapshot at {path}")
        self._identity: Identity | None = None
        self._failed: Identity | None = None
        self._next_check = -math.inf
        self._loader_pid = 0  # the process whose loader runs (none: 0)
        # what the loader made: the identity of the file and its snapshot, or why not
        self._loaded: tuple[Identity, Backend | Exception] | None = None
        if self.file.is_file():
            self._identity, self._backend = _load(self.file)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._serving(), name)

    def _serving(self) -> Backend:
        """The snapshot of this request: the one it began with, else the current one."""
        self._check()
        scope = readscope.current()
        return self._backend if scope is None else scope.pin(self, lambda: self._backend)

    def _check(self) -> None:
        """Swap in a snapshot loaded since; at most once per CHECK_S, start loading the
        file when it was replaced."""
        if self._loaded is not None:
            self._install()
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_S
        try:
            identity = _identity(self.file.stat())
        except OSError:  # gone for now: the old snapshot serves on
            return
        if identity in (self._identity, self._failed) or self._loader_pid == os.getpid():
            return
        self._loader_pid = os.getpid()
        _in_os_thread(self._reload, identity)

    def _reload(self, identity: Identity) -> None:
        """Load the file seen with ``identity`` (on the loader's thread); :meth:`_install`
        takes the result."""
        try:
            self._loaded = _load(self.file)
        except Exception as exc:  # any failure keeps the old snapshot
            self._loaded = (identity, exc)

    def _install(self) -> None:
        """Serve the snapshot the loader made, or log why it could not."""
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        self._loader_pid = 0
        identity, result = loaded
        if isinstance(result, Exception):
            self._failed = identity
            log.warning("snapshot %s not reloaded, the old one serves on: %s", self.file,
                        result)
            return
        self._backend, self._identity = result, identity
        log.info("snapshot %s reloaded: dataset version %s", self.file,
                 result.dataset_version())

    def close(self) -> None:
        """Release the current snapshot."""
        self._backend.close()
