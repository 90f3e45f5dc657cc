"""The lock: requirements/constraints.txt, the exact versions the service and CI install
(``make install`` runs ``pip install -c requirements/constraints.txt -e '.[dev]'``),
compiled by uv from setup.cfg's requirements (install_requires and the dev extra).

``make lock`` (this script) compiles it again, keeping every pin that still fits setup.cfg;
extra arguments go to ``uv pip compile`` (``--upgrade`` moves every pin to the newest
release that fits, ``--upgrade-package NAME`` one). Its first line records a digest of
setup.cfg's requirements, which tests/test_lock.py compares with setup.cfg as it is, so a
requirement edited without ``make lock`` fails the suite, offline.
"""

from __future__ import annotations

import configparser
import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP_CFG = ROOT / "setup.cfg"
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
PYTHON_VERSION = "3.11"  # the Makefile's PYTHON, the oldest setup.cfg allows
DIGEST_PREFIX = "# setup.cfg requirements sha256: "


def _options(setup_cfg: Path) -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(setup_cfg, encoding="utf-8")
    return config


def requirements(setup_cfg: Path = SETUP_CFG) -> list[str]:
    """The requirements the lock is compiled from: install_requires, then the dev extra."""
    config = _options(setup_cfg)
    lines = (config["options"]["install_requires"].splitlines()
             + config["options.extras_require"]["dev"].splitlines())
    return [line.strip() for line in lines if line.strip()]


def digest(setup_cfg: Path = SETUP_CFG) -> str:
    """sha256 of python_requires and the requirements, one a line, as written."""
    python = _options(setup_cfg)["options"]["python_requires"].strip()
    text = "\n".join([f"python_requires {python}", *requirements(setup_cfg)])
    return hashlib.sha256(text.encode()).hexdigest()


def main(uv_args: list[str]) -> int:
    """Compile the lock with uv, then put the digest of setup.cfg's requirements on top."""
    subprocess.run([sys.executable, "-m", "uv", "pip", "compile", "setup.cfg",
                    "--extra", "dev", "--python-version", PYTHON_VERSION,
                    "--custom-compile-command", "make lock", "--quiet",
                    "--output-file", str(CONSTRAINTS.relative_to(ROOT)), *uv_args],
                   cwd=ROOT, check=True)
    compiled = [line for line in CONSTRAINTS.read_text().splitlines(keepends=True)
                if not line.startswith(DIGEST_PREFIX)]
    CONSTRAINTS.write_text(f"{DIGEST_PREFIX}{digest()}\n" + "".join(compiled))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
