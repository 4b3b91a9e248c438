"""`make run` end to end: a fresh data directory, its own embedded PostgreSQL and Redis, every
process of the Procfile, the sample mailbox triaged, a clean stop with nothing left running, and
the data kept for the next start."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mailscore.supervision import read_procfile
from tests.running import ROOT, environment, free_port, processes_using

SAMPLE_COUNT = 70


def make_run(data_dir: Path) -> subprocess.CompletedProcess:
    arguments = f"--exit-when-done --port {free_port()} --flower-port {free_port()} --timeout 600"
    return subprocess.run(
        ["make", "--no-print-directory", "run", f"RUN_ARGS={arguments}"], cwd=ROOT,
        env=environment(data_dir), capture_output=True, text=True, timeout=900,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.slow
def test_make_run_triages_the_samples_and_keeps_them(tmp_path):
    first = make_run(tmp_path)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    assert not processes_using(tmp_path)
    assert f"Ingested the sample mailbox: {SAMPLE_COUNT} new, 0 already stored" in output
    rows = [line for line in output.splitlines() if re.match(r"^results \|\s+\d+\s", line)]
    assert len(rows) == SAMPLE_COUNT
    assert all((" triaged " in row or " needs_review " in row) for row in rows)
    assert "Admin user 'admin' created with MAILSCORE_ADMIN_PASSWORD." in output
    for program in read_procfile(ROOT / "Procfile"):
        assert f"up | {program.name} started (pid " in output
        assert f"up | {program.name} stopped (" in output
        assert (tmp_path / "logs" / f"{program.name}.log").is_file()
    assert (tmp_path / "postgres" / "PG_VERSION").is_file()
    assert (tmp_path / "redis" / "redis.rdb").is_file()  # saved as Redis stopped

    again = make_run(tmp_path)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-4000:]
    assert not processes_using(tmp_path)
    assert f"Ingested the sample mailbox: 0 new, {SAMPLE_COUNT} already stored" in output
    assert "Admin user: as created before" in output
