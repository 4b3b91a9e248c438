"""`make run` end to end: a fresh data directory, its own embedded PostgreSQL and Redis, every
process of the Procfile, the sample mailbox triaged, a clean stop, and the data kept."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_COUNT = 70


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_run(data_dir: Path) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}  # fmt: skip
    environment["MAILSCORE_DATA_DIR"] = str(data_dir)
    environment["MAILSCORE_ADMIN_PASSWORD"] = "run-test-password"
    arguments = f"--exit-when-done --port {free_port()} --flower-port {free_port()} --timeout 600"
    return subprocess.run(
        ["make", "--no-print-directory", "run", f"RUN_ARGS={arguments}"], cwd=ROOT,
        env=environment, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.slow
def test_make_run_triages_the_samples_and_keeps_them(tmp_path):
    first = make_run(tmp_path)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    assert f"Ingested the sample mailbox: {SAMPLE_COUNT} new, 0 already stored" in output
    rows = [line for line in output.splitlines() if line.startswith("results |")
            and line.split("|", 1)[1].split()[:1] and line.split("|", 1)[1].split()[0].isdigit()]  # fmt: skip
    assert len(rows) == SAMPLE_COUNT
    assert all((" triaged " in row or " needs_review " in row) for row in rows)
    assert "Admin user 'admin' created with MAILSCORE_ADMIN_PASSWORD." in output
    for process in ("web", "triage", "generate", "verify", "maintenance", "beat", "flower"):
        assert f"{process} started" in output and f"{process} stopped" in output
    assert (tmp_path / "postgres").is_dir() and (tmp_path / "redis").is_dir()

    again = make_run(tmp_path)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-4000:]
    assert f"Ingested the sample mailbox: 0 new, {SAMPLE_COUNT} already stored" in output
    assert "Admin user: as created before" in output
