"""The lock (requirements/constraints.txt) is not stale: it was compiled from setup.cfg as
it is, pins every requirement within its specifiers, and pip takes it as constraints.

Offline on purpose: compiling again here would reach the index, take minutes and answer
differently from one day to the next (new releases), whereas `make lock` records a digest of
setup.cfg's requirements on the lock's first line.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lock", ROOT / "requirements" / "lock.py")
assert _spec is not None and _spec.loader is not None
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def lock_lines() -> list[str]:
    """The lines of the lock that are not comments (uv's ``# via`` lines are)."""
    lines = (line.split("#", 1)[0].strip() for line in lock.CONSTRAINTS.read_text().splitlines())
    return [line for line in lines if line]


def pins() -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for m in map(PIN.match, lock_lines()) if m}


def test_the_lock_was_compiled_from_setup_cfg_as_it_is():
    first = lock.CONSTRAINTS.read_text().splitlines()[0]
    assert first == f"{lock.DIGEST_PREFIX}{lock.digest()}", (
        "setup.cfg's requirements changed since requirements/constraints.txt was compiled: "
        "run make lock")


def test_every_requirement_is_pinned_within_its_specifiers():
    pinned, wrong = pins(), []
    for line in lock.requirements():
        requirement = Requirement(line)
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            wrong.append(f"{requirement.name}: not in the lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            wrong.append(f"{requirement.name}=={version} is outside {requirement.specifier}")
    assert wrong == [], "run make lock: " + "; ".join(wrong)


def test_the_lock_is_exact_pins_that_pip_takes_as_constraints():
    # pip refuses constraints with extras (psycopg[binary]) and a range would not lock
    assert [line for line in lock_lines() if not PIN.match(line)] == []
    assert "geosearch" not in pins()


def test_the_digest_follows_every_requirement_line(tmp_path):
    text = lock.SETUP_CFG.read_text()
    edited = tmp_path / "setup.cfg"
    edited.write_text(text.replace("gunicorn>=", "gunicorn>=0.1,!=0.2,", 1))
    assert lock.requirements(edited) != lock.requirements()
    assert lock.digest(edited) != lock.digest()
