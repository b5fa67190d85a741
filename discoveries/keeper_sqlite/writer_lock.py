"""keeper.db's writer queue: a first-come, first-served lock on a file beside the database, taken
before a write transaction begins and given back when it ends, so that writers wait their turn
in the kernel instead of polling.

SQLite alone makes a writer that finds the write lock taken poll for it, sleeping 1, 2, 5, 10,
… up to 100 ms between tries (``sqliteDefaultBusyCallback`` in SQLite's ``main.c``): with a
crowd of writers, one keeps waking just after the lock was taken again and waits for seconds
while each transaction lasts a millisecond. ``flock(2)`` wakes a waiter at once, but a newcomer
may take the lock before the woken waiter runs, which under a crowd is as unfair. So the queue
is a ticket lock, made of Linux's open file description locks (``F_OFD_SETLK``, ``fcntl(2)``),
which belong to one descriptor, so that two connections of one process queue too:

- a writer takes the next ticket (a counter in the lock file's first 8 bytes, read and written
  under a lock on byte 0) and locks the byte of its ticket (``1 + ticket``) for as long as it
  queues and writes;
- its turn has come when no earlier ticket's byte is locked (one read lock over all of them,
  which the kernel grants only then). Until then it listens on a Unix socket named after the
  file and its ticket (Linux's abstract namespace: nothing on disk, gone when closed) and waits
  there, at most until its timeout;
- when done, or when giving up, it unlocks all it holds and then wakes the next ticket's writer
  by connecting to its socket, so each writer done wakes only the next one.

Nobody can pass a waiter: a newcomer's ticket is later. A process killed while queued or while
writing loses its locks with its last descriptor (the kernel's rule), so the queue goes on
without it; as a killed writer wakes nobody, a waiter also looks at the queue every
:data:`_WAKE_SLICE` seconds. Where its socket cannot be made, or reached (another network
namespace), a waiter finds its turn by those looks alone, keeping its place.

The lock is advisory and only for the writers of this backend: the old bot, the ``sqlite3``
shell and other tools write without it and are kept in order by SQLite's own locking, as
before; so is everything when the queue is not there. :func:`writer_lock_for` gives ``None``,
and writers rely on SQLite's busy handler alone, where open file description locks do not
exist (Windows, macOS, Linux before 3.15) or the lock file cannot be opened for writing or
locked.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import socket
import sqlite3
import stat
import struct
import sys
import time
import weakref
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

logger = logging.getLogger(__name__)

#: Appended to the database file's real path to name its lock file (``keeper.db-writer.lock``),
#: beside SQLite's own ``-wal`` and ``-shm`` files. SQLite never opens it.
LOCK_SUFFIX = "-writer.lock"

# fcntl(2)'s struct flock: l_type, l_whence, l_start, l_len, l_pid, padded as C pads it.
_FLOCK = struct.Struct("@hhqqi0q")
_COUNTER = struct.Struct("<Q")
#: The byte whose lock guards the ticket counter; ticket t locks byte _FIRST_TICKET + t.
_GUARD = 0
_FIRST_TICKET = 1
#: The longest pause, in seconds, between two tries for the counter's guard, held by another
#: writer only while it takes a ticket.
_GUARD_PAUSE_MAX = 0.001
#: The longest wait, in seconds, for a wake-up before a waiting writer looks at the queue
#: again: how soon it sees a writer before it killed while writing, which wakes nobody.
_WAKE_SLICE = 0.05
#: How many tickets given up a writer steps over to find the next one to wake.
_WAKE_REACH = 64

#: The open locks of this process, whose descriptors a forked child must not keep.
_LOCKS: weakref.WeakSet[WriterLock] = weakref.WeakSet()
#: Files and failures this process already reported once.
_WARNED: set[str] = set()


def _warn_once(key: str, message: str, *args) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message, *args)


def _ofd_locks() -> bool:
    # The wake-ups' abstract socket names are Linux's too.
    return sys.platform.startswith("linux") and hasattr(fcntl, "F_OFD_SETLK")


def lock_path_for(database: str | os.PathLike) -> Path:
    """The lock file of the SQLite database file ``database``: its real path (symbolic links
    resolved, as SQLite's Unix VFS does for its ``-wal`` file) plus :data:`LOCK_SUFFIX`."""
    return Path(os.path.realpath(database) + LOCK_SUFFIX)


def writer_lock_for(database: str, *, timeout: float) -> WriterLock | None:
    """The writer lock of a connection to ``database`` (a ``NAME`` as Django passes it), waiting
    at most ``timeout`` seconds, or ``None`` when there is none to take: an in-memory database,
    a ``file:`` URI (its path and options are SQLite's to interpret), a temporary database
    (empty name), no open file description locks (see the module's docstring), or a lock file
    that cannot be opened for writing or locked (logged once per file as a warning). Each call
    opens its own descriptor, so two connections of one process also wait for each other."""
    if not _ofd_locks() or not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = lock_path_for(database)
    try:
        return WriterLock(path, timeout=timeout)
    except OSError as exc:
        _warn_once(
            str(path),
            "cannot open %s (%s): keeper.db's writers wait by SQLite's busy handler alone",
            path,
            exc.strerror,
        )
        return None


#: What a lock file no longer fit for the queue raises: refused locks, a file that is no longer
#: one (a FIFO: "Illegal seek"), a counter holding what no writer wrote (out of range).
_QUEUE_FAULTS = (OSError, struct.error, OverflowError, ValueError)


def _locked() -> sqlite3.OperationalError:
    return sqlite3.OperationalError("database is locked")


def _lock(fd: int, command: int, kind: int, start: int, length: int) -> bytes:
    return fcntl.fcntl(fd, command, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))


def _try_lock(fd: int, kind: int, start: int, length: int) -> bool:
    try:
        _lock(fd, fcntl.F_OFD_SETLK, kind, start, length)
    except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another holder
        return False
    return True


def _unlock_all(fd: int) -> None:
    _lock(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, 0, 0)


class WriterLock:
    """One connection's place in the writer queue of the lock file ``path`` (see the module's
    docstring), through a descriptor of its own: taken by :meth:`acquire`, given back by
    :meth:`release`; :meth:`close` gives it back and closes the descriptor. Not for sharing
    between threads.

    ``timeout`` (seconds) bounds the wait, as SQLite's busy timeout does: past it,
    :meth:`acquire` raises ``sqlite3.OperationalError("database is locked")`` and leaves the
    queue. Raises ``OSError`` when the lock file cannot be opened for reading and writing (it
    is created when missing, with the permissions of the database file beside it, as SQLite
    creates its ``-wal`` file) or its file system or kernel has no such locks."""

    def __init__(self, path: Path, *, timeout: float):
        self.path = path
        self.timeout = timeout
        #: True between :meth:`acquire` and :meth:`release`.
        self.held = False
        self._fd: int | None = None
        self._ticket: int | None = None
        self._listener: socket.socket | None = None
        self._pid = os.getpid()
        self._fd = self._open()
        _LOCKS.add(self)

    def _open(self) -> int:
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            fd = os.open(self.path, flags)
        else:
            try:
                mode = stat.S_IMODE(os.stat(str(self.path)[: -len(LOCK_SUFFIX)]).st_mode)
            except FileNotFoundError:
                pass  # no database yet: the umask's mode, as for any new file
            else:
                try:
                    os.fchmod(fd, mode & 0o666)
                except OSError:
                    os.close(fd)
                    raise
        try:
            # A kernel before 3.15, or a file system without locks, refuses here and not later.
            _lock(fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK, _GUARD, 1)
            found = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        self._socket_prefix = f"\0keeper-sync-writer:{found.st_dev}:{found.st_ino}:"
        return fd

    def _descriptor(self) -> int:
        if self._pid != os.getpid():
            # Inherited through a fork that skipped os.register_at_fork: the numbers may name
            # other files by now, so they are left alone.
            if self._listener is not None:
                self._listener.detach()
            self._fd, self._listener, self._ticket = None, None, None
            self._pid, self.held = os.getpid(), False
        if self._fd is None:
            self._fd = self._open()
        return self._fd

    def acquire(self) -> float:
        """Take a ticket and wait until every earlier one is done, at most ``timeout`` seconds;
        returns the seconds spent waiting (0.0 when nobody was ahead). Raises
        ``sqlite3.OperationalError("database is locked")`` when the time ran out, giving up
        the place in the queue. When the queue itself fails (the kernel refuses a lock, the
        file is no longer one, its counter holds what no writer wrote), the writer goes on
        without it (logged once per file, 0.0 returned, nothing held): SQLite's own locking
        keeps the write right, as for every writer without the queue."""
        if self.held:
            return 0.0
        started = time.monotonic()
        try:
            fd = self._descriptor()
            self._ticket = self._ticket_take(fd, started + self.timeout)
            ahead = not _turn_has_come(fd, self._ticket)
            if ahead:
                self._turn_wait(fd, self._ticket, started + self.timeout)
        except _QUEUE_FAULTS as exc:
            with contextlib.suppress(*_QUEUE_FAULTS):
                self._leave()
            self._ticket = None
            _warn_once(
                str(self.path),
                "keeper.db's writer queue at %s fails (%s): writers wait by SQLite's busy "
                "handler alone until it works again",
                self.path,
                exc,
            )
            return 0.0
        except BaseException:
            self._leave()
            raise
        self.held = True
        return time.monotonic() - started if ahead else 0.0

    def _ticket_take(self, fd: int, deadline: float) -> int:
        pause = _GUARD_PAUSE_MAX / 16
        while not _try_lock(fd, fcntl.F_WRLCK, _GUARD, 1):
            if time.monotonic() >= deadline:
                raise _locked()
            time.sleep(pause)
            pause = min(2 * pause, _GUARD_PAUSE_MAX)
        try:
            ticket = _counter_read(fd)
            # A byte still locked means the counter went back (the file was rewritten while
            # writers queued): skip to a free one rather than share it.
            while not _try_lock(fd, fcntl.F_WRLCK, _FIRST_TICKET + ticket, 1):
                ticket += 1
            os.pwrite(fd, _COUNTER.pack(ticket + 1), 0)
        finally:
            _lock(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, _GUARD, 1)
        return ticket

    def _turn_wait(self, fd: int, ticket: int, deadline: float) -> None:
        # Listening first, then looking: a writer that leaves after the look wakes this one.
        self._listener = listener = self._listen(ticket)
        pause = _WAKE_SLICE / 64
        try:
            while not _turn_has_come(fd, ticket):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _locked()
                if listener is None:
                    time.sleep(min(pause, remaining))
                    pause = min(2 * pause, _WAKE_SLICE)
                    continue
                poller = select.poll()
                poller.register(listener, select.POLLIN)
                if poller.poll(math.ceil(min(remaining, _WAKE_SLICE) * 1000)):
                    _drain(listener)
        finally:
            self._listener = None
            if listener is not None:
                listener.close()

    def _listen(self, ticket: int) -> socket.socket | None:
        try:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        except OSError as exc:
            _warn_once("listen", "keeper.db's writer queue cannot listen (%s): waiters poll", exc)
            return None
        try:
            listener.bind(self._socket_prefix + str(ticket))
            listener.listen(socket.SOMAXCONN)
        except OSError as exc:
            listener.close()
            _warn_once("listen", "keeper.db's writer queue cannot listen (%s): waiters poll", exc)
            return None
        return listener

    def release(self) -> None:
        """Give the lock back (the next ticket's writer goes on); nothing when it is not
        held."""
        if self.held:
            self.held = False
            self._leave()

    def _leave(self) -> None:
        ticket, self._ticket = self._ticket, None
        if self._fd is None or self._pid != os.getpid():
            return
        # Unlocked before the next writer is woken, so that it finds its turn.
        _unlock_all(self._fd)
        if ticket is not None:
            # Best effort: a waiter not woken finds its turn at its next look.
            with contextlib.suppress(*_QUEUE_FAULTS):
                self._wake_next(self._fd, ticket)

    def _wake_next(self, fd: int, ticket: int) -> None:
        """Wake the writer of the first ticket after ``ticket`` still queued, if any: its
        socket is connected to, then closed. Tickets given up are stepped over, up to
        :data:`_WAKE_REACH` of them; past that, or where the socket cannot be reached, the
        writer finds its turn at its next look."""
        end = None
        for after in range(ticket + 1, ticket + 1 + _WAKE_REACH):
            if _ticket_queued(fd, after):
                peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
                with peer:
                    peer.connect_ex(self._socket_prefix + str(after))
                return
            if end is None:
                end = _counter_read(fd)
            if after + 1 >= end:
                return

    def close(self) -> None:
        """Give the lock back and close the descriptor; the next :meth:`acquire` opens a new
        one."""
        try:
            self.release()
        finally:
            fd, self._fd = self._fd, None
            if fd is not None and self._pid == os.getpid():
                os.close(fd)

    def __del__(self):
        # A connection dropped without close() (its thread ended) must not keep the descriptor.
        self.close()

    def _forget_after_fork(self) -> None:
        # In a child just forked: its copies share the parent's locks and socket, so they are
        # closed without unlocking, which would take the locks from the parent.
        fd, self._fd, self.held, self._pid = self._fd, None, False, os.getpid()
        listener, self._listener, self._ticket = self._listener, None, None
        if fd is not None:
            os.close(fd)
        if listener is not None:
            listener.close()


def _counter_read(fd: int) -> int:
    """The next ticket to give (0 in a new, empty lock file)."""
    stored = os.pread(fd, _COUNTER.size, 0)
    return _COUNTER.unpack(stored)[0] if len(stored) == _COUNTER.size else 0


def _turn_has_come(fd: int, ticket: int) -> bool:
    """Whether no ticket before ``ticket`` is queued or writing any more; when so, the read lock
    over their bytes that shows it is kept until :func:`_unlock_all`."""
    # Length 0 would mean "to the end of the file": ticket 0 has nobody before it.
    return ticket == 0 or _try_lock(fd, fcntl.F_RDLCK, _FIRST_TICKET, ticket)


def _ticket_queued(fd: int, ticket: int) -> bool:
    """Whether the byte of ``ticket`` is locked: its writer is queued or writing."""
    found = _lock(fd, fcntl.F_OFD_GETLK, fcntl.F_RDLCK, _FIRST_TICKET + ticket, 1)
    return _FLOCK.unpack(found)[0] != fcntl.F_UNLCK


def _drain(listener: socket.socket) -> None:
    """Close the connections waiting on ``listener``, each a wake-up already seen."""
    while True:
        try:
            peer, _ = listener.accept()
        except BlockingIOError:
            return
        peer.close()


def _after_fork_in_child() -> None:
    for lock in list(_LOCKS):
        lock._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
