"""manage.py up supervising real processes: a killed worker is restarted while the others keep
running, Ctrl-C stops everything even when nobody reads the output any more, a program in a
crash loop ends the run with a message naming it, and killing up outright stops what it
started. Nothing a run started outlives it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
from django.core.management import CommandError, call_command

from mailscore.supervision import Program, read_procfile
from tests.running import ROOT, UpRun, processes_using, wait_gone

PROGRAMS = {program.name: program.command for program in read_procfile(ROOT / "Procfile")}
# Each program gets 30 s after SIGTERM (all together), supervisord a little more.
STOP_WITHIN = 60.0
CHATTER = (
    'python -c "import itertools, time; '
    "[print('chatter line', n, flush=True) or time.sleep(0.05) for n in itertools.count()]\""
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One data directory for the module's runs: migrated once, as a second start finds it."""
    path = tmp_path_factory.mktemp("up")
    yield path
    assert not processes_using(path)


def check_everything_stopped(run: UpRun, data_dir, status: int | None = 0) -> None:
    exit_status = run.process.wait(STOP_WITHIN)
    if status is not None:
        assert exit_status == status, run.output[-4000:]
    left = wait_gone(list(run.seen.values()), 10)
    assert not left, [process.cmdline() for process in left]
    assert not processes_using(data_dir)


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_ctrl_c_stops_every_process(data_dir):
    run = UpRun(data_dir, "--no-samples")
    try:
        run.wait_for(r"^results \| Up\.", timeout=240)
        first = run.started_pids()
        assert set(first) == set(PROGRAMS)
        others = {name: psutil.Process(pid) for name, pid in first.items() if name != "triage"}
        mark = len(run.lines)

        os.kill(first["triage"], signal.SIGKILL)
        # Restarted at once, or after 1 s where it was killed within its first 10 s.
        killed = r"^up \| triage exited \(terminated by SIGKILL\)"
        run.wait_for(killed + r"(; restarting it| [\d.]+ s after starting; retry 1 of 3 in 1 s)$",
                     timeout=30, after=mark)  # fmt: skip
        restarted = int(run.wait_for(r"^up \| triage started \(pid (\d+)\)", 30, mark)[1])
        assert restarted != first["triage"]
        assert psutil.Process(restarted).is_running()
        for name, process in others.items():
            assert process.is_running(), f"{name} was restarted too"
        assert run.started_pids() == {**first, "triage": restarted}

        run.remember_processes()
        run.interrupt()
        check_everything_stopped(run, data_dir)
        for name in PROGRAMS:
            assert re.search(rf"^up \| {name} stopped \(", run.output, re.MULTILINE), name
        assert "mailscore stopped" in run.output
    finally:
        run.kill_everything()


@pytest.mark.slow
def test_b_ctrl_c_stops_everything_after_the_output_reader_is_gone(data_dir, tmp_path):
    # The web server and a real worker, and a program that keeps writing, so that up goes on
    # writing into the pipe after its reader is gone.
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"web: {PROGRAMS['web']}\nmaintenance: {PROGRAMS['maintenance']}\n"
                        f"chatter: {CHATTER}\n")  # fmt: skip
    copy = tmp_path / "tee.log"
    copy.touch()  # read before tee, started just now, has opened it
    tee = subprocess.Popen(["tee", str(copy)], stdin=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    with open(tmp_path / "stderr.log", "w") as errors:
        run = UpRun(data_dir, "--no-samples", "--procfile", str(procfile),
                    stdout=tee.stdin, stderr=errors)  # fmt: skip
    tee.stdin.close()  # up holds the only writing end now
    try:
        deadline = time.monotonic() + 240
        while "results | Up." not in copy.read_text() and time.monotonic() < deadline:
            assert run.process.poll() is None, copy.read_text()[-4000:]
            time.sleep(0.5)
        assert "chatter | chatter line" in copy.read_text()
        run.remember_processes()

        tee.kill()  # as Ctrl-C kills tee in `make run | tee run.log` before up is done
        tee.wait()
        time.sleep(1)  # up's writes now fail
        run.interrupt()
        check_everything_stopped(run, data_dir)
        errors = (tmp_path / "stderr.log").read_text()
        assert "Traceback" not in errors and "BrokenPipe" not in errors, errors
    finally:
        tee.kill()
        run.kill_everything()


def test_c_a_crash_loop_ends_the_run_naming_the_program(data_dir, tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f"web: {PROGRAMS['web']}\n"
        "broken: python -c \"import sys; print('cannot go on'); sys.exit(3)\"\n"
    )
    run = UpRun(data_dir, "--no-samples", "--procfile", str(procfile))
    try:
        run.wait_for(r"^up \| web started", 120)
        check_everything_stopped(run, data_dir, status=None)
        assert run.process.returncode == 1
        output = run.output
        # Retried after 1, 2 and 3 s, then given up: four quick exits in all.
        assert len(re.findall(r"^up \| broken exited \(exit status 3\)", output, re.M)) == 4
        assert "retry 3 of 3 in 3 s" in output
        assert "up | broken keeps exiting within 10 s of starting" in output
        assert "broken | cannot go on" in output
        assert "CommandError: broken kept exiting right after it started" in output
        assert re.search(r"^up \| web stopped", output, re.M)
    finally:
        run.kill_everything()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_d_killing_up_outright_stops_everything_it_started(data_dir, tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"web: {PROGRAMS['web']}\nmaintenance: {PROGRAMS['maintenance']}\n")
    run = UpRun(data_dir, "--no-samples", "--procfile", str(procfile))
    try:
        run.wait_for(r"^results \| Up\.", timeout=240)
        run.wait_for(r"^up \| maintenance started", timeout=10)
        everything = run.remember_processes()
        assert any(process.name() == "postgres" for process in everything)
        run.process.kill()
        assert run.process.wait(10) == -signal.SIGKILL
        left = wait_gone(everything, STOP_WITHIN)
        assert not left, [process.cmdline() for process in left]
        assert not processes_using(data_dir)
    finally:
        run.kill_everything()


def test_procfile_lines_are_name_colon_command(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text("# the programs\n\nweb: gunicorn app:wsgi --bind 127.0.0.1:${PORT}\n"
                        "worker:celery -A app worker\n")  # fmt: skip
    assert read_procfile(procfile) == [
        Program("web", "gunicorn app:wsgi --bind 127.0.0.1:${PORT}"),
        Program("worker", "celery -A app worker"),
    ]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("web gunicorn app\n", "line 1: expected `name: command`"),
        ("web: gunicorn app\nmy worker: celery\n", "line 2: expected `name: command`"),
        ("web:\n", "line 1: expected `name: command`"),
        ("web: a\nweb: b\n", "line 2: the program 'web' is listed twice"),
        ("# nothing yet\n", "lists no programs"),
    ],
)
def test_a_bad_procfile_is_refused_saying_what_is_accepted(tmp_path, text, complaint):
    procfile = tmp_path / "Procfile"
    procfile.write_text(text)
    with pytest.raises(CommandError, match=re.escape(complaint)):
        call_command("up", procfile=procfile)


def test_a_missing_procfile_is_refused(tmp_path):
    with pytest.raises(CommandError, match="Cannot read the Procfile .*missing"):
        call_command("up", procfile=tmp_path / "missing")
