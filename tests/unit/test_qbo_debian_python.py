"""The client's pure unit tests (tests/unit/test_qbo_client_*.py) run again under Debian's
/usr/bin/python3 with Debian's python3-requests: the versions PL/Python uses inside the database
(the venv has a newer Python and requests). Those files use only unittest, so Debian's Python
needs no test packages; scripts/setup.sh installs python3-requests."""

from __future__ import annotations

import os
import re
import subprocess
import unittest
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = Path("/usr/bin/python3")
MODULES = sorted(
    f"tests.unit.{path.stem}" for path in (ROOT / "tests" / "unit").glob("test_qbo_client_*.py")
)

pytestmark = pytest.mark.skipif(
    not DEBIAN_PYTHON.exists(), reason="no /usr/bin/python3 (not a Debian host)"
)


def debian_env() -> dict[str, str]:
    """Nothing of the venv: only the repository and the in-database package on the path."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT / "plpython"),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


def test_the_modules_are_found():
    assert len(MODULES) >= 5, MODULES


def test_debian_python_uses_debians_requests():
    probe = subprocess.run(
        [
            str(DEBIAN_PYTHON),
            "-c",
            "import sys, requests, qbo_sync_db; "
            "print(sys.version.split()[0]); print(requests.__version__); print(requests.__file__);"
            "print(qbo_sync_db.__file__)",
        ],
        cwd=ROOT,
        env=debian_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, (
        f"Debian's python3 cannot import requests or qbo_sync_db (run scripts/setup.sh):\n"
        f"{probe.stderr}"
    )
    version, requests_version, requests_file, package_file = probe.stdout.split()
    assert version.startswith("3."), version
    assert requests_file.startswith("/usr/lib/python3/"), requests_file  # Debian's, not the venv's
    assert package_file.startswith(str(ROOT / "plpython")), package_file
    assert requests_version.split(".")[0] == "2", requests_version


def test_client_unit_tests_pass_under_debian_python():
    expected = unittest.defaultTestLoader.loadTestsFromNames(MODULES).countTestCases()
    run = subprocess.run(
        [str(DEBIAN_PYTHON), "-m", "unittest", *MODULES],
        cwd=ROOT,
        env=debian_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    ran = re.search(r"^Ran (\d+) tests? in", output, re.M)
    assert ran, output[-2000:]
    assert int(ran.group(1)) == expected, output[-2000:]  # every test ran, none went missing
    assert "skipped" not in output.splitlines()[-1], output[-2000:]
