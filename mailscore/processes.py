"""Starting child processes that do not outlive this one, and stopping a process politely first
and forcefully after a deadline."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol

import psutil

_PR_SET_PDEATHSIG = 1


class Stoppable(Protocol):
    def send_signal(self, sig: int) -> None: ...
    def wait(self, timeout: float | None = None) -> object: ...


def die_with_this_process(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec_fn for subprocess.Popen: the child gets sig when this process dies, even when it
    is killed outright. None where the kernel offers no such signal (outside Linux), and off the
    main thread, because Linux sends it when the thread that started the child ends."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child must not load libraries
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # this process died before the signal was armed
            os.kill(os.getpid(), sig)

    return set_parent_death_signal


def stop_process(process: Stoppable, sig: int, timeout: float) -> bool:
    """Send sig and wait up to timeout seconds; kill the process if it is still there. Returns
    whether it stopped on sig alone. Works on a subprocess.Popen (which it reaps) and on a
    psutil.Process that this process did not start."""
    try:
        process.send_signal(sig)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return True
    if wait_stopped(process, timeout):
        return True
    with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
        process.send_signal(signal.SIGKILL)
    wait_stopped(process, 10)
    return False


def wait_stopped(process: Stoppable, timeout: float) -> bool:
    """Whether the process ended within timeout seconds. A process that is not our child counts
    as ended once it is a zombie: reaping it is its parent's business."""
    if isinstance(process, subprocess.Popen):
        try:
            process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def is_same_process(pid: int, started: float) -> bool:
    """Whether pid is still the process that started at `started` (psutil's create_time), and
    not a later process that was given the same number."""
    try:
        process = psutil.Process(pid)
        return (
            process.status() != psutil.STATUS_ZOMBIE and abs(process.create_time() - started) < 0.01
        )
    except psutil.Error:
        return False


def identity(pid: int | None = None) -> dict[str, float]:
    """pid and start time: enough to tell this process from a later one with the same pid."""
    process = psutil.Process(pid)
    return {"pid": process.pid, "started": process.create_time()}
