"""Run the `qbo-sync` command as a real process and check how it fails."""

from __future__ import annotations

import os
import subprocess
import sys

from qbo_sync.install import PROJECT_ROOT


def run_qbo_sync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`qbo-sync ARGS` in a child process, without $QBO_SYNC_DSN unless `env` sets it."""
    child_env = {k: v for k, v in os.environ.items() if k not in ("QBO_SYNC_DSN",)}
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "qbo_sync.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env,
        cwd=PROJECT_ROOT,
        check=False,
    )


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], code: int, *fragments: str
) -> None:
    """Exit code `code`, no traceback, and exactly one line on stderr containing `fragments`."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
