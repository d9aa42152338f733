"""What several test files share: the process table, to check that no process outlives the command that started it;
headless Chromium driven through its DevTools protocol; a small disk to fill up."""
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
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


CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'


@contextlib.contextmanager
def chromium(profile: Path):
    "Headless Chromium with a DevTools server on a free loopback port: yields the server's address."
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} not found: `make test` installs Debian's chromium package"
    # the background-networking flags keep Chromium from calling out on a closed network
    browser = subprocess.Popen([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                                '--no-first-run', '--disable-background-networking', '--disable-component-update',
                                '--disable-sync', f'--user-data-dir={profile}', '--remote-debugging-port=0',
                                'about:blank'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in browser.stderr:
            if devtools := re.search(r'DevTools listening on ws://([\d.:]+)/', line): break
        else: pytest.fail('Chromium did not start its DevTools server')
        threading.Thread(target=browser.stderr.read, daemon=True).start()  # its later messages never fill the pipe
        yield f'http://{devtools[1]}'
    finally:
        browser.kill()
        browser.wait()


class Tab:
    "A new tab of the browser behind `devtools`: DevTools calls, the events they bring, scripts evaluated in the page."
    def __init__(self, devtools: str, url: str = 'about:blank'):
        self.devtools, self.url, self.events, self._ids = devtools, url, [], itertools.count(1)

    async def __aenter__(self):
        self._http = aiohttp.ClientSession()
        async with self._http.put(f'{self.devtools}/json/new?{self.url}') as r: target = await r.json(content_type=None)
        self._ws = await self._http.ws_connect(target['webSocketDebuggerUrl'], max_msg_size=0)
        return self

    async def __aexit__(self, *exc):
        await self._ws.close()
        await self._http.close()

    async def call(self, method: str, **params) -> dict:
        "The answer to one DevTools call; the events that came before it are kept in `events`."
        await self._ws.send_json(dict(id=(call := next(self._ids)), method=method, params=params))
        while (answer := await self._ws.receive_json(timeout=120)).get('id') != call:
            if 'method' in answer: self.events.append(answer)
        return answer

    async def wait_for(self, event: str) -> dict:
        "The first event named `event`, from those kept or the next to come."
        while not (seen := [e for e in self.events if e.get('method') == event]):
            self.events.append(await self._ws.receive_json(timeout=120))
        return seen[0]

    async def evaluate(self, expression: str):
        "The value of `expression` in the page (a promise is awaited); asked again while the page is still loading."
        for _ in range(20):  # a page still loading loses its context: ask again once the answer says so
            answer = await self.call('Runtime.evaluate', expression=expression, awaitPromise=True, returnByValue=True)
            if 'exceptionDetails' not in answer.get('result', {'exceptionDetails': answer.get('error')}):
                return answer['result']['result'].get('value')
        pytest.fail(f'the page never answered: {answer}')


@pytest.fixture
def small_disk(tmp_path):
    "A tmpfs of 8 MiB of its own (`.path`; mounting needs root, else the test is skipped) and `.fill(leave)`."
    disk = tmp_path / 'disk'
    disk.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', str(disk)], capture_output=True, text=True)
    if r.returncode: pytest.skip(f'a small file system to fill needs `mount` as root: {r.stderr.strip()}')
    def fill(leave: int) -> None:
        "Fill the disk with one hidden file until `leave` bytes are free."
        st = os.statvfs(disk)
        (disk / '.filler').write_bytes(bytes(st.f_bavail * st.f_frsize - leave))
    try: yield SimpleNamespace(path=disk, fill=fill)
    finally: subprocess.run(['umount', '-l', str(disk)], check=True)
