"""keeper.db's writers take their turn in one first-come, first-served queue
(:mod:`discoveries.keeper_sqlite.writer_lock`): a write transaction holds it from ``BEGIN`` to
``COMMIT`` or ``ROLLBACK``, readers never wait for it, a writer that waits longer than the busy
timeout fails as SQLite would, and a process killed while in the queue does not stop it."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import OperationalError, connection, connections, transaction

from discoveries.keeper_sqlite import writer_lock
from discoveries.keeper_sqlite.writer_lock import (
    LOCK_SUFFIX,
    WriterLock,
    lock_path_for,
    writer_lock_for,
)
from discoveries.models import Discovery
from tests.conftest import ROOT, manage_env
from tests.factories import discovery_make

OFD = pytest.mark.skipif(
    not writer_lock._ofd_locks(), reason="no open file description locks (Linux only)"
)
WRITES = pytest.mark.django_db(transaction=True)
#: How long a test waits for something that should happen at once: only a failure waits this
#: long, so it is generous. Writers that must be woken wait longer than this, so that a wake-up
#: that never comes fails the test rather than their own timeout ending the wait.
PATIENCE = 20.0


def _keeper_lock_path() -> Path:
    connection.ensure_connection()
    return lock_path_for(connection.settings_dict["NAME"])


def _lock(path: Path, timeout: float = PATIENCE) -> WriterLock:
    return WriterLock(path, timeout=timeout)


def _free(path: Path) -> bool:
    """Whether another writer can take the queue at once (then it gives it back)."""
    probe = _lock(path, timeout=0.05)
    try:
        probe.acquire()
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return True


def _tickets_given(path: Path) -> int:
    """The lock file's counter of tickets (its first 8 bytes, little-endian)."""
    stored = path.read_bytes()[:8]
    return int.from_bytes(stored, "little") if len(stored) == 8 else 0


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _in_thread(target) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run():
        try:
            target()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


@pytest.fixture
def keeper_timeout():
    """Reconnect ``default`` with a busy timeout of the given seconds; restored afterwards."""
    options = connection.settings_dict["OPTIONS"]

    def reconnect(seconds: float) -> None:
        connection.close()
        connection.settings_dict["OPTIONS"] = {**options, "timeout": seconds}
        connection.ensure_connection()

    yield reconnect
    connection.close()
    connection.settings_dict["OPTIONS"] = options


def _holder_process(path: Path, *, fork_child: bool = False) -> subprocess.Popen:
    """A process that takes the queue of ``path`` (and, if asked, then forks a child that
    sleeps), says "held" and sleeps; the caller kills it."""
    code = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from discoveries.keeper_sqlite.writer_lock import WriterLock
        lock = WriterLock(Path({str(path)!r}), timeout=60)
        lock.acquire()
        child = os.fork() if {fork_child!r} else None
        if child == 0:
            time.sleep(120)
            os._exit(0)
        print("held", child or "", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    said = proc.stdout.readline().split()
    assert said[:1] == ["held"]
    proc.child_pid = int(said[1]) if len(said) > 1 else None
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=PATIENCE)
    if proc.stdout is not None:
        proc.stdout.close()


# --- the queue on its own ---------------------------------------------------------------------


@OFD
def test_a_second_writer_waits_for_the_first_and_then_goes(tmp_path):
    """While one connection holds the queue another cannot take it; once given back it can."""
    path = tmp_path / f"keeper.db{LOCK_SUFFIX}"
    first = _lock(path)
    assert first.acquire() == 0.0
    assert not _free(path)
    first.release()
    assert _free(path)
    first.close()


@OFD
def test_writers_go_in_the_order_they_came(tmp_path, monkeypatch):
    """With the queue held, a writer that came second goes before the one that came third,
    each woken by the one before it (the periodic look is put off past the test's patience)."""
    monkeypatch.setattr(writer_lock, "_WAKE_SLICE", 3 * PATIENCE)
    path = tmp_path / f"keeper.db{LOCK_SUFFIX}"
    holder = _lock(path)
    holder.acquire()
    order: list[str] = []

    def writer(name: str) -> None:
        lock = _lock(path, timeout=3 * PATIENCE)
        lock.acquire()
        order.append(name)
        lock.close()

    threads = []
    for queued, name in enumerate(("second", "third"), start=2):
        threads.append(_in_thread(lambda name=name: writer(name)))
        _wait_until(lambda queued=queued: _tickets_given(path) == queued, f"{name} queued")
    holder.release()
    for thread, errors in threads:
        thread.join(PATIENCE)
        assert not errors, errors
    assert order == ["second", "third"]


@OFD
def test_a_writer_that_waits_past_its_timeout_fails_and_leaves_the_queue(tmp_path):
    """Waiting longer than the timeout raises "database is locked" as SQLite's busy timeout
    does; the writer that gave up does not hold up the ones that came after it."""
    path = tmp_path / f"keeper.db{LOCK_SUFFIX}"
    holder = _lock(path)
    holder.acquire()
    late = _lock(path)
    got: list[float] = []
    quitter = _lock(path, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        quitter.acquire()
    assert time.monotonic() - started >= 0.29
    assert not quitter.held
    thread, errors = _in_thread(lambda: got.append(late.acquire()))
    _wait_until(lambda: _tickets_given(path) == 3, "the late writer queued")
    holder.release()
    thread.join(PATIENCE)
    assert not errors, errors
    assert late.held and got
    late.close()
    quitter.close()


@OFD
def test_another_process_holding_the_queue_makes_writers_wait_until_it_is_killed(tmp_path):
    """Two processes take turns; a holder killed with SIGKILL gives the queue back, since the
    kernel drops its locks."""
    path = tmp_path / f"keeper.db{LOCK_SUFFIX}"
    holder = _holder_process(path)
    try:
        assert not _free(path)
    finally:
        _kill(holder)
    writer = _lock(path)
    writer.acquire()
    assert writer.held
    writer.close()


@OFD
def test_a_writer_killed_while_waiting_does_not_hold_up_the_next(tmp_path, monkeypatch):
    """A process killed while queued leaves a gap the queue steps over: the holder, when done,
    wakes the writer after the gap (the periodic look is put off past the test's patience)."""
    monkeypatch.setattr(writer_lock, "_WAKE_SLICE", 3 * PATIENCE)
    path = tmp_path / f"keeper.db{LOCK_SUFFIX}"
    holder = _lock(path)
    holder.acquire()
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from discoveries.keeper_sqlite.writer_lock import WriterLock
        WriterLock(Path({str(path)!r}), timeout=120).acquire()
        """
    )
    waiter = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        _wait_until(lambda: _tickets_given(path) == 2, "the other process queued")
        after = _lock(path, timeout=3 * PATIENCE)
        thread, errors = _in_thread(after.acquire)
        _wait_until(lambda: _tickets_given(path) == 3, "the next writer queued")
    finally:
        _kill(waiter)
    holder.release()
    thread.join(PATIENCE)
    assert not errors, errors
    assert after.held
    after.close()


@OFD
def test_a_killed_holders_forked_child_does_not_keep_the_queue(tmp_path):
    """A child forked by the holder shares its lock file's descriptor; it closes its copy at
    the fork, so killing the holder alone frees the queue."""
    path = tmp_path / f"keeper.db{LOCK_SUFFIX}"
    holder = _holder_process(path, fork_child=True)
    try:
        assert not _free(path)
    finally:
        _kill(holder)
    try:
        writer = _lock(path, timeout=5)
        writer.acquire()
        writer.close()
    finally:
        os.kill(holder.child_pid, signal.SIGKILL)


def test_no_queue_where_sqlite_names_no_plain_file():
    """An in-memory database, a file: URI and a temporary database get no queue: SQLite's own
    locking serves them."""
    for name in (":memory:", "file:keeper.db?mode=rw", ""):
        assert writer_lock_for(name, timeout=1) is None


def test_no_queue_without_open_file_description_locks(tmp_path, monkeypatch):
    """Where the locks do not exist (Windows, macOS), writers rely on SQLite alone."""
    monkeypatch.setattr(writer_lock, "_ofd_locks", lambda: False)
    assert writer_lock_for(str(tmp_path / "keeper.db"), timeout=1) is None


@OFD
def test_a_lock_file_that_cannot_be_locked_leaves_writers_to_sqlite(tmp_path, monkeypatch, caplog):
    """A file system or kernel refusing the locks gives no queue, with a warning naming the
    file, rather than failing every write."""

    def refused(*args):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(writer_lock, "_lock", refused)
    database = tmp_path / "keeper.db"
    assert writer_lock_for(str(database), timeout=1) is None
    assert f"cannot open {lock_path_for(database)}" in caplog.text


@OFD
def test_the_lock_file_gets_the_database_files_permissions(tmp_path):
    """The lock file is made with the database file's mode, as SQLite makes its -wal file, so
    every account that may write keeper.db may queue."""
    database = tmp_path / "keeper.db"
    database.touch()
    database.chmod(0o664)
    lock = writer_lock_for(str(database), timeout=1)
    assert lock is not None
    assert (lock_path_for(database).stat().st_mode & 0o777) == 0o664
    lock.close()


# --- keeper.db's connections ------------------------------------------------------------------


@WRITES
def test_without_the_queue_keeper_db_is_written_as_before(monkeypatch):
    """Where there is no queue (Windows, macOS) a connection has no writer lock and writes
    as Django's own backend does."""
    monkeypatch.setattr(writer_lock, "_ofd_locks", lambda: False)
    connection.close()
    try:
        with transaction.atomic():
            Group.objects.create(name="no queue")
        assert connection.writer_lock is None
        Group.objects.filter(name="no queue").update(name="still no queue")
    finally:
        connection.close()
    assert Group.objects.filter(name="still no queue").exists()


@OFD
@WRITES
def test_a_write_transaction_holds_the_queue_from_begin_to_commit():
    """An atomic block takes the queue at its start and gives it back at its commit."""
    path = _keeper_lock_path()
    assert _free(path)
    with transaction.atomic():
        Group.objects.create(name="inside")
        assert connection.writer_lock.held
        assert not _free(path)
    assert not connection.writer_lock.held
    assert _free(path)
    assert Group.objects.filter(name="inside").exists()


@OFD
@WRITES
def test_a_failed_transaction_gives_the_queue_back():
    """An exception inside the block rolls it back and gives the queue back."""
    path = _keeper_lock_path()
    with pytest.raises(ValueError), transaction.atomic():
        Group.objects.create(name="rolled back")
        raise ValueError("stop")
    assert not connection.writer_lock.held
    assert _free(path)
    assert not Group.objects.filter(name="rolled back").exists()


@OFD
@WRITES
def test_nested_blocks_share_the_outer_blocks_turn():
    """Savepoints of nested blocks, kept or rolled back, neither wait for the queue again nor
    give it back; the outermost block's end does."""
    path = _keeper_lock_path()
    with transaction.atomic():
        Group.objects.create(name="outer")
        with transaction.atomic():
            Group.objects.create(name="kept")
        with pytest.raises(ValueError), transaction.atomic():
            Group.objects.create(name="undone")
            raise ValueError("inner")
        assert connection.writer_lock.held
        assert not _free(path)
    assert _free(path)
    assert set(Group.objects.values_list("name", flat=True)) == {"outer", "kept"}


@OFD
@WRITES
def test_a_write_outside_a_transaction_takes_its_turn_too():
    """``Model.save()`` outside a block (one INSERT … RETURNING) goes through the queue and
    leaves neither the queue nor SQLite's write lock held."""
    path = _keeper_lock_path()
    holder = _lock(path)
    holder.acquire()
    given = _tickets_given(path)
    thread, errors = _in_thread(lambda: (Group.objects.create(name="queued"), connection.close()))
    _wait_until(lambda: _tickets_given(path) > given, "the save queued")
    assert not Group.objects.filter(name="queued").exists()
    holder.release()
    thread.join(PATIENCE)
    assert not errors, errors
    group = Group.objects.create(name="alone")
    assert group.pk is not None and not connection.writer_lock.held
    other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    holder.close()


@OFD
@WRITES
def test_a_write_returning_rows_gives_both_locks_back_before_they_are_read():
    """A write outside a transaction that returns rows (SQLite commits it only once they are
    all read) is read at once, so the queue and SQLite's write lock are given back together,
    and the rows are still there to fetch."""
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO auth_group (name) VALUES ('a'), ('b') RETURNING name")
        assert not connection.writer_lock.held
        other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert cursor.fetchone() == ("a",)
        assert cursor.fetchall() == [("b",)]
        assert cursor.fetchone() is None


@OFD
@WRITES
def test_readers_never_wait_for_the_queue():
    """With another writer holding the queue, reads outside a block answer at once."""
    Group.objects.create(name="seen")
    holder = _lock(_keeper_lock_path())
    holder.acquire()
    try:
        assert list(Group.objects.values_list("name", flat=True)) == ["seen"]
    finally:
        holder.close()


@OFD
@WRITES
def test_a_writer_past_the_busy_timeout_fails_as_sqlite_would(keeper_timeout):
    """Waiting in the queue longer than KEEPER_BUSY_TIMEOUT_SECONDS raises Django's
    OperationalError "database is locked", and the connection writes again afterwards."""
    keeper_timeout(0.3)
    holder = _lock(_keeper_lock_path())
    holder.acquire()
    started = time.monotonic()
    with pytest.raises(OperationalError, match="database is locked"), transaction.atomic():
        Group.objects.create(name="never")
    assert time.monotonic() - started >= 0.29
    holder.release()
    assert not connection.writer_lock.held
    Group.objects.create(name="later")
    holder.close()


@OFD
@WRITES
def test_time_in_the_queue_counts_against_sqlites_own_wait(keeper_timeout):
    """A writer that waited in the queue has only the rest of the busy timeout left for a
    program holding SQLite's write lock without the queue (the sqlite3 shell): one timeout
    in all, not one for each wait."""
    keeper_timeout(2.0)
    path = _keeper_lock_path()
    outsider = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    holder = _lock(path)
    holder.acquire()
    timer = threading.Timer(1.6, holder.release)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError, match="database is locked"), transaction.atomic():
            Group.objects.create(name="never")
        waited = time.monotonic() - started
    finally:
        timer.join()
        outsider.execute("ROLLBACK")
        outsider.close()
        holder.close()
    # 2 s in all; the queue's 1.6 s and SQLite's 2 s one after the other would be 3.6 s.
    assert 1.6 <= waited < 3.0
    assert _free(path)


@OFD
@WRITES
def test_a_begin_that_fails_gives_the_queue_back(keeper_timeout):
    """When BEGIN IMMEDIATE fails (another program holds SQLite's lock past the timeout), the
    queue is given back at once."""
    keeper_timeout(0.2)
    outsider = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="database is locked"), transaction.atomic():
            Group.objects.create(name="never")
    finally:
        outsider.execute("ROLLBACK")
        outsider.close()
    assert not connection.writer_lock.held
    assert _free(_keeper_lock_path())


@OFD
@WRITES
def test_two_threads_submitting_take_turns_without_errors():
    """Two threads submitting at once through the service all succeed, each submit taking one
    turn in the queue."""
    path = _keeper_lock_path()
    before = _tickets_given(path)
    start = threading.Barrier(2)

    def submitter():
        start.wait(PATIENCE)
        try:
            for n in range(20):
                discovery_make(description=f"crowd {n}")
        finally:
            connections.close_all()

    runs = [_in_thread(submitter) for _ in range(2)]
    for thread, errors in runs:
        thread.join(PATIENCE * 3)
        assert not errors, errors
    assert _tickets_given(path) - before >= 40
    assert Discovery.objects.filter(description__startswith="crowd ").count() == 40


@OFD
@WRITES
def test_a_django_process_killed_inside_a_transaction_frees_keeper_db(tmp_path):
    """A process killed with SIGKILL in the middle of a write transaction (its keeper.db
    connection holding the queue and SQLite's write lock) stops no one: the next submit goes
    through."""
    name = connection.settings_dict["NAME"]
    env = manage_env(keeper=Path(name), haven=tmp_path / "VH-Database.db")
    code = textwrap.dedent(
        """
        import time
        import django
        django.setup()
        from django.contrib.auth.models import Group
        from django.db import transaction
        with transaction.atomic():
            Group.objects.create(name="killed")
            print("held", flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        assert not _free(_keeper_lock_path())
    finally:
        _kill(proc)
    discovery_make(description="after the kill")
    assert not Group.objects.filter(name="killed").exists()


@pytest.mark.parametrize(
    "counter",
    [b"\xff" * 8, b"\xfe" + b"\xff" * 6 + b"\x7f"],
    ids=["all-ones", "just-under-2**63"],
)
def test_a_counter_no_writer_wrote_lets_writers_go_on_by_sqlites_locking(tmp_path, counter):
    """A lock file whose ticket counter holds what no writer wrote (rewritten by hand, say)
    does not stop the writes: the writer goes on under SQLite's own locking, as writers
    without the queue do."""
    database = tmp_path / "keeper.db"
    lock_path_for(database).write_bytes(counter)
    for _ in range(3):
        lock = writer_lock_for(str(database), timeout=1.0)
        assert lock is not None
        assert lock.acquire() == 0.0
        lock.release()
        assert not lock.held
        lock.close()


def test_a_fifo_in_place_of_the_lock_file_lets_writers_go_on(tmp_path):
    """A FIFO where the lock file should be (its reads and locks fail) leaves the writers to
    SQLite's own locking instead of failing every write."""
    database = tmp_path / "keeper.db"
    os.mkfifo(lock_path_for(database))
    lock = writer_lock_for(str(database), timeout=1.0)
    if lock is not None:
        assert lock.acquire() == 0.0
        assert not lock.held
        lock.close()
