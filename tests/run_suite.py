"""The whole test suite as two pytest sessions side by side: the tests that start whole systems
(markers reliability and slow: tests/reliability, `make run`, the supervisor) in one, the rest in
the other. The system tests spend most of their time waiting (outages held for seconds, mail
posted at a fixed rate, leases running out), so on a small machine the rest of the suite fits in
their waits. Each session has its own data directory, so its own embedded PostgreSQL and Redis:
neither sees the other's databases, queues or caches. Where DATABASE_URL or REDIS_URL names a
server, both sessions would share it, so they run one after the other instead.

Side by side, each torch and BLAS process of both sessions (the tests' own and the workers they
start) computes on one thread (OMP_NUM_THREADS=1, unless it is set): with more threads than
cores, torch's threads spin waiting for each other, and the same work takes a third longer.

    python -m tests.run_suite [pytest options for both sessions]

The rest streams to the terminal; the system session's output goes to a log, shown when the
rest ends and followed from there until the system session ends too. The exit status is the
first non-zero one of the two, or 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# addopts says -m 'not soak'; a -m given here replaces it, so each keeps the soak tests out.
SYSTEMS = ["-m", "(reliability or slow) and not soak"]
REST = ["-m", "not reliability and not slow and not soak"]
# pytest's exit statuses
INTERRUPTED = 2
NO_TESTS_COLLECTED = 5


def base_data_dir() -> Path:
    return Path(os.environ.get("MAILSCORE_TEST_DATA_DIR") or ROOT / ".devdata" / "test")


def session(arguments: list[str], data_dir: Path, environment: dict[str, str],
            **output) -> subprocess.Popen:  # fmt: skip
    # Imported here, after main() took its copy of the environment: importing mailscore sets a
    # default DJANGO_SETTINGS_MODULE there, which would replace the suite's own settings.
    from mailscore.processes import die_with_this_process

    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *arguments], cwd=ROOT,
        env={**environment, "MAILSCORE_TEST_DATA_DIR": str(data_dir)},
        # Out of the terminal's process group: a Ctrl-C reaches each session once, from here.
        # Should this process die without passing it on, each session is interrupted all the
        # same, and stops its servers and processes.
        start_new_session=True, preexec_fn=die_with_this_process(signal.SIGINT), **output,
    )  # fmt: skip


def follow(log_path: Path, process: subprocess.Popen) -> None:
    """Print the log as it grows until process ends: what it wrote so far at once, then the rest
    live, so that a session still running shows where it is."""
    with open(log_path, errors="replace") as log:
        while True:
            ended = process.poll() is not None
            if text := log.read():
                print(text, end="", flush=True)
            if ended:
                return
            time.sleep(0.5)


def interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(arguments: list[str]) -> int:
    # A stop asked of this process (a CI runner's timeout) is passed on as a Ctrl-C is.
    signal.signal(signal.SIGTERM, interrupt)
    environment = dict(os.environ)
    base = base_data_dir()
    systems_dir = base.with_name(base.name + "-systems")
    systems_dir.mkdir(parents=True, exist_ok=True)
    log_path = systems_dir / "pytest.log"
    started = time.monotonic()
    shared_servers = [name for name in ("DATABASE_URL", "REDIS_URL") if environment.get(name)]
    if shared_servers:
        print(f"{' and '.join(shared_servers)} set: the system tests run first, then the rest",
              flush=True)  # fmt: skip
    else:
        environment.setdefault("OMP_NUM_THREADS", "1")
    running: list[subprocess.Popen] = []
    with open(log_path, "w") as log:
        try:
            print(f"the system tests: output in {log_path}", flush=True)
            systems = session([*arguments, *SYSTEMS], systems_dir, environment, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
            running.append(systems)
            if shared_servers:
                systems.wait()
            rest = session([*arguments, *REST], base, environment)
            running.append(rest)
            rest.wait()
            print(f"\n===== the system tests ({log_path}) =====", flush=True)
            follow(log_path, systems)
        except KeyboardInterrupt:
            # Pass the interrupt on, and let each session stop its servers and processes
            # before this exits.
            for process in running:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
            for process in running:
                process.wait()
            print(f"interrupted; the system tests' output: {log_path}", file=sys.stderr)
            return INTERRUPTED
    print(f"===== both sessions done in {time.monotonic() - started:.0f} s: "
          f"rest exit {rest.returncode}, system tests exit {systems.returncode} =====")  # fmt: skip
    statuses = [rest.returncode, systems.returncode]
    # Options that select tests (a path, -k) may leave one session nothing to run.
    if NO_TESTS_COLLECTED in statuses and statuses != [NO_TESTS_COLLECTED] * 2:
        statuses.remove(NO_TESTS_COLLECTED)
    return next((status for status in statuses if status), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
