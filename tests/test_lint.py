"""ruff over the whole tree in the test run, with the rules pyproject.toml selects: among them
flake8-bandit's (S), each exception justified where it is made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run([str(ruff), "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_security_rules_are_selected():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "check", "--show-settings", "manage.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "flake8-bandit" in result.stdout or "S101" in result.stdout or "(S" in result.stdout
