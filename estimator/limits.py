"""Resource limits of a run: how much memory a replay may use (--max-memory) and how long the run may take
(--timeout).

Memory is budgeted, not policed: replay estimates the bytes one sample needs before it runs a batch and picks a batch
that fits (see replay.plan_batch). Time is enforced: the deadline is checked between stages and batches, and an
onnxruntime run still going when it passes is stopped through `RunOptions.terminate`, so a slow model cannot hang
the tool.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from .errors import TimeLimitError

DEFAULT_MEMORY_FRACTION = 2  # default --max-memory: half of the RAM this process may use

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """'2GB' → 2·10⁹, '512MiB' → 512·2²⁰, '1000' → 1000 bytes. Raises ValueError with the accepted forms."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        found = _SIZE.match(str(text))
        unit = found.group(2).lower() if found else ""
        if not found or unit not in _UNITS:
            raise ValueError(f"{text!r} is not a size; use e.g. 2GB, 1.5GiB, 512MB or a number of bytes")
        value = int(float(found.group(1)) * _UNITS[unit])
    if value < 1:
        raise ValueError(f"{text!r}: a memory limit must be at least 1 byte")
    return value


def format_size(count: int | float) -> str:
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"


def _cgroup_limit() -> int | None:
    """The container's memory limit (cgroup v2 or v1), when there is one."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 2**60:  # v1 reports "no limit" as a huge number
            return int(raw)
    return None


def usable_memory() -> int | None:
    """Physical RAM, or the container's limit when lower; None when the platform does not say."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = None
    limits = [v for v in (physical, _cgroup_limit()) if v]
    return min(limits) if limits else None


def default_max_memory() -> int:
    usable = usable_memory()
    return usable // DEFAULT_MEMORY_FRACTION if usable else 4 * 10**9


_LONGEST_WAIT = 366 * 24 * 3600.0


class Deadline:
    """A point in time after which the run gives up; `None` seconds means no limit."""

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None and not seconds > 0:  # also refuses NaN
            raise ValueError(f"timeout must be a positive number of seconds, got {seconds!r}")
        self.seconds = seconds
        self._end = time.monotonic() + seconds if seconds is not None else None

    def remaining(self) -> float | None:
        return None if self._end is None else self._end - time.monotonic()

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def error(self, doing: str) -> TimeLimitError:
        return TimeLimitError(f"gave up after --timeout {self.seconds:g} s while {doing}; "
                              "raise --timeout")

    def check(self, doing: str) -> None:
        if self.expired():
            raise self.error(doing)

    @contextmanager
    def watch(self) -> Iterator[Any]:
        """onnxruntime RunOptions whose `terminate` flag is raised when the deadline passes, or on Ctrl-C (None: no
        limit, and no Ctrl-C to watch for)."""
        left = self.remaining()
        interruptible = (threading.current_thread() is threading.main_thread()
                         and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if left is None and not interruptible:
            yield None
            return
        import onnxruntime as ort

        options = ort.RunOptions()
        timer = None
        if left is not None:
            # (a timer over a year is none: threading cannot wait that long, and raised in its thread on 1e12 s)
            timer = threading.Timer(min(max(left, 0.0), _LONGEST_WAIT), lambda: setattr(options, "terminate", True))
            timer.daemon = True  # never keeps the process alive
            timer.start()
        try:
            with _terminate_on_interrupt(options) if interruptible else nullcontext():
                yield options
        finally:
            if timer is not None:
                timer.cancel()


@contextmanager
def _terminate_on_interrupt(options: Any) -> Iterator[None]:
    """Ctrl-C during an onnxruntime call: Python runs its handler only when the call returns (a large batch can take
    seconds, a pathological graph minutes). The C-level handler also writes the signal number to a wakeup fd; a
    thread waiting on it raises `terminate`, the call returns at once, and the KeyboardInterrupt follows."""
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    try:
        previous = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
    except ValueError:  # not the main thread after all
        os.close(reader)
        os.close(writer)
        yield
        return

    def wait() -> None:
        while True:
            try:
                received = os.read(reader, 64)
            except OSError:
                return
            if not received:  # the writer closed: the watch is over
                return
            if signal.SIGINT in received:
                options.terminate = True

    watcher = threading.Thread(target=wait, name="neuronops-interrupt", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        os.close(writer)
        watcher.join(timeout=1.0)
        os.close(reader)
