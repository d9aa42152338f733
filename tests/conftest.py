"""What several test files share: the process table, to check that no process outlives the command that started it."""
import signal
import time
from types import SimpleNamespace

import psutil
import pytest

ORPHAN_DEADLINE = 5.0  # seconds: a process a command started may run at most this long after the command has ended


def descendants(pid: int, arg: str | None = None) -> list[psutil.Process]:
    "The processes under `pid` now (its children, theirs, ...); only those with `arg` in their command line if given."
    try: procs = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess: return []
    return [p for p in procs if arg is None or arg in _cmdline(p)]


def _cmdline(p: psutil.Process) -> list[str]:
    try: return p.cmdline()
    except psutil.Error: return []  # ended meanwhile


def _running(p: psutil.Process) -> bool:
    try: return p.status() != psutil.STATUS_ZOMBIE  # a zombie has ended; its new parent may never read it
    except psutil.NoSuchProcess: return False


def still_running(procs: list[psutil.Process], within: float = ORPHAN_DEADLINE) -> list[str]:
    "Those of `procs` (as 'pid name') still running once all have ended or `within` seconds have passed."
    deadline = time.monotonic() + within
    while (alive := [p for p in procs if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the process table: what is asserted is the deadline, not this pause
    return [f'{p.pid} {p.name()}' for p in alive if _running(p)]


def wait_for(found, what: str, proc, within: float = 300):
    "Poll `found()` until it returns something true, and return it; fail if `proc` ends first or after `within` s."
    deadline = time.monotonic() + within
    while not (result := found()):
        assert proc.poll() is None, f'the command ended with {proc.returncode} before {what}: {proc.stderr.read()}'
        assert time.monotonic() < deadline, f'no {what} after {within} s'
        time.sleep(0.1)
    return result


def default_signals():
    "For `preexec_fn`: a test run in the background ignores SIGINT; a command should see it as a terminal sends it."
    for s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_DFL)


@pytest.fixture
def process_table():
    "`descendants`, `still_running`, `wait_for` and `default_signals`, for tests that end commands in every way."
    return SimpleNamespace(descendants=descendants, still_running=still_running, wait_for=wait_for,
                           default_signals=default_signals)
