"""prometheus_client's multiprocess mode, as gunicorn runs the service: every worker
writes its metrics to files of its own in one directory, and ``/metrics`` (whichever
worker answers it) sums them.

- :func:`prepare` chooses the directory (``PROMETHEUS_MULTIPROC_DIR`` when set, else a
  new one, removed when the server exits) and empties it, so that no count of an
  earlier run is summed in. It must run before prometheus_client is imported, which
  decides the mode then: ``geosearch serve`` and the gunicorn config call it first.
- :func:`child_exit` is gunicorn's hook when a worker dies (killed -9 included): its
  live gauges (the pools' connections) stop counting; its counters and histograms stay
  in the sums, so a count never goes backwards when a worker is replaced.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare() -> Path:
    """The directory of this server's metrics, empty, named in ``PROMETHEUS_MULTIPROC_DIR``
    for the workers. RuntimeError when prometheus_client was imported already (its
    metrics would then stay in one process)."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the metrics directory "
                           "was chosen: call geosearch.observe.multiproc.prepare() first")
    given = os.environ.get(ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix="geosearch-metrics-"))
        os.environ[ENV] = str(directory)
        atexit.register(_remove_when_exiting, directory, os.getpid())
    return directory


def _remove_when_exiting(directory: Path, owner: int) -> None:
    """Remove the directory when its server exits (the workers, forked with the exit
    handlers of their arbiter, leave it)."""
    if os.getpid() == owner:
        shutil.rmtree(directory, ignore_errors=True)


def child_exit(server, worker) -> None:
    """gunicorn's ``child_exit`` hook: the worker's live gauges are dropped."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def directory() -> str | None:
    """The directory of the multiprocess mode; None in a single process."""
    return os.environ.get(ENV) or None
