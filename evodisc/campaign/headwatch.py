"""Is the Ray head still there? A daemon thread that knocks on its GCS port.

A driver whose Ray head is gone (killed, stopped, its machine down) would wait on Ray until
Ray's own C++ side gives up after 60 s and terminates the process with lines of its own. A
:class:`HeadWatch` notices first: once the head's GCS port has refused connections for
:data:`HEAD_GRACE_SECONDS`, :attr:`HeadWatch.lost` is set, and the Ray pool (which never waits
on Ray for longer than :data:`WATCH_STEP` at a time) stops the campaign with one line. A TCP
connect is answered by the kernel while the port is open, however busy the head is: only a
closed port or an unreachable machine counts.
"""

from __future__ import annotations

import socket
import threading
import time

#: Seconds the head's GCS port may refuse connections before the head counts as lost (under
#: Ray's own 60 s, after which it terminates the driver).
HEAD_GRACE_SECONDS = 15.0
#: Seconds between two knocks on the port, and the longest single wait on Ray of a pool that
#: watches its head.
WATCH_STEP = 1.0


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` as ``(host, port)``; :class:`ValueError` when it is not of that form."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"bad Ray address {address!r}: expected HOST:PORT (the head's port)")
    return host.strip("[]"), int(port)


def knock(address: str, timeout: float) -> None:
    """Open and close a TCP connection to ``address``; :class:`OSError` when none is accepted
    within ``timeout`` seconds."""
    socket.create_connection(split_address(address), timeout=timeout).close()


class HeadWatch:
    """Knocks on ``address`` (the head's GCS, ``HOST:PORT``) every ``step`` seconds from a
    daemon thread; :attr:`lost` is set once no knock succeeded for ``grace`` seconds."""

    def __init__(self, address: str, grace: float = HEAD_GRACE_SECONDS, step: float = WATCH_STEP):
        self.address, self.grace, self.step = address, grace, step
        self.lost = threading.Event()
        self._closed = threading.Event()
        threading.Thread(target=self._watch, name="evodisc-head-watch", daemon=True).start()

    def _watch(self) -> None:
        answered = time.monotonic()
        while not self._closed.wait(self.step):
            try:
                knock(self.address, timeout=self.step)
                answered = time.monotonic()
            except OSError:
                if time.monotonic() - answered >= self.grace:
                    self.lost.set()
                    return

    def close(self) -> None:
        """Stop watching."""
        self._closed.set()
