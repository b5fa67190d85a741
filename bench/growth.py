"""The growth benchmark: drain and the status queries at 10 k, 100 k and 1 M queue rows.

For each size, a fresh folder: a copy of the keeper.db :func:`keeper_filled` made for that size
(migrated, then filled by :func:`queue_fill` with a queue after 30 days of use; made once per
``make bench`` and shared with :mod:`bench.http`) and a fresh copy of the Control Room's schema
fixture as VH-Database.db (only the queue grows: VH keeps the fixture's rows). Then, ``--runs``
times:

- :data:`DRAIN` new discoveries are queued through ``manage.py submit_discovery --file``;
- the first time only, :mod:`bench.queries`, in a ``manage.py shell`` process, captures the SQL
  the code itself runs for the claim (``syncq.services.queue_items_claim``, rolled back), for
  ``/sync/status`` (``syncq.selectors.queue_status``) and for ``/sync/statistics``
  (``queue_statistics``), with those discoveries due, and gives each SELECT's ``EXPLAIN QUERY
  PLAN`` and its time (median of up to 5 executions after one untimed, ms);
- ``manage.py sync_now --until-idle`` drains them: items/s, whole process; every one of them
  must end ``synced`` and nothing else may change state.

Figures: the drain rate at each size (``sync_until_idle`` timed inside its process, so that the
process's start does not weigh on 2,000 items), the drain at the largest size over the drain at the
smallest (target ``>= 0.8``: within 20 %, issue 14), and each query's time at each size. The
results also hold the plans (``plans``), every step that reads a table or an index whole or
sorts in a temporary B-tree (``plan_flags``), each query's time at the largest size over its
time at the smallest (``query_growth``), and whether the status counts equal a ``GROUP BY``
(``counts_exact``). ``--smoke`` uses 1 k, 3 k and 10 k rows and 200 discoveries, one run.
"""

from __future__ import annotations

import atexit
import functools
import json
import queue
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench.harness import FIXTURE, entries, manage, manage_env, median, places, vh_copy

#: The type of each filled discovery, by emoji, with one of its four fields (REFERENCE.md).
TYPES = (
    ("🦴", "species_type", "Theropod"),
    ("📜", "key_excerpt", "The Atlas remembers"),
    ("🏛️", "structure_type", "Tower"),
    ("⚙️", "tech_category", "Drive core"),
    ("🦗", "species_name", "Glass moth"),
    ("💎", "resource_type", "Activated indium"),
    ("🚀", "ship_class", "Hauler"),
    ("⚡", "hazard_type", "Ion storm"),
    ("🆕", "update_name", "Worlds"),
    ("📖", "story_type", "Legend"),
)

#: Error texts of items that used up their attempts or wait out a backoff.
FAILURES = (
    "VH-Database.db is locked (waited 5 s): database is locked",
    "VH-Database.db not found at /srv/haven/VH-Database.db",
    "OperationalError: disk I/O error",
    "IntegrityError: CHECK constraint failed: (system_id IS NOT NULL) OR (location_type IN "
    "('space', 'deep_space') AND location_name IS NOT NULL)",
    "OperationalError: unable to open database file",
    "VH-Database.db: the file is not a database",
)

#: Systems the filled ``waiting`` items wait for.
MISSING_SYSTEMS = tuple(f"UNCHARTED {n:02d}" for n in range(40))

_DAY_S = 86_400.0
_EPOCH = datetime(1970, 1, 1)

_DISCOVERY_SQL = (
    "INSERT INTO discoveries (id, user_id, username, guild_id, discovery_type, location,"
    " system_name, description, evidence_url, submission_timestamp, analysis_status,"
    " pattern_matches, mystery_tier, tags, metadata, location_type, haven_discovery_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, 0, NULL, ?, ?, ?)"
)
_QUEUE_SQL = (
    "INSERT INTO sync_queue (id, discovery_id, sync_status, sync_attempts, max_attempts,"
    " last_sync_attempt, next_retry_after, sync_error, haven_discovery_id, created_at,"
    " synced_at, metadata, leased_until, lease_token, operation, waiting_on)"
    " VALUES (?, ?, ?, ?, 10, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 'write', ?)"
)
_ATTEMPT_SQL = (
    "INSERT INTO sync_attempt (queue_item_id, number, started_at, duration_ms, outcome, error,"
    " haven_discovery_id) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


_CHUNK_ROWS = 20_000


class _Clock:
    """Epoch seconds as Django writes a UTC date-time on SQLite (``YYYY-MM-DD HH:MM:SS.ffffff``),
    each minute's text made once."""

    def __init__(self) -> None:
        self._minutes: dict[int, str] = {}

    def __call__(self, seconds: float) -> str:
        minute, rest = divmod(round(seconds * 1_000_000), 60_000_000)
        prefix = self._minutes.get(minute)
        if prefix is None:
            prefix = (_EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M:")
            self._minutes[minute] = prefix
        return f"{prefix}{rest // 1_000_000:02d}.{rest % 1_000_000:06d}"


def _chunks(
    rows: int,
    *,
    first_d: int,
    first_q: int,
    where: list[tuple[str, str, str]],
    waiting_on: str | None,
    now: float,
    seed: int,
):
    """The rows of :func:`queue_fill`, as ``(discoveries, queue items, attempts)`` lists of
    at most :data:`_CHUNK_ROWS` items each."""
    text = _Clock()
    start = now - 30 * _DAY_S
    step = 30 * _DAY_S / max(rows, 1)
    rng = random.Random(seed)
    discoveries, items, attempts = [], [], []
    for n in range(rows):
        did, qid = first_d + n, first_q + n
        created_s = start + n * step + rng.random() * step
        created = text(created_s)
        emoji, field, value = TYPES[n % len(TYPES)]
        system, place, kind = where[n % len(where)]
        roll = rng.random()
        if roll < 0.97:
            state, tries = "synced", 1 if roll < 0.95 else 2 + n % 2
            tried_s = created_s + 0.05 + rng.random() * (2.0 if tries == 1 else 90.0)
            tried, synced = text(tried_s), text(tried_s + 0.002 + rng.random() * 0.02)
            haven_id, retry, error, waits = 100 + n, None, None, None
            meta = (
                '{"how": "written", "location_resolved": true, "location_unresolved": null,'
                f' "row_hash": "{qid:064x}"}}'
            )
            outcome = "synced"
        else:
            part = (roll - 0.97) / 0.03
            haven_id, synced, waits, meta = None, None, None, "{}"
            tried = text(min(now - 60.0, created_s + 3600.0 + rng.random() * 12_000.0))
            if part < 0.40:
                state, tries, retry, outcome = "max_retries_exceeded", 10, None, "exceeded"
                error = FAILURES[n % len(FAILURES)]
            elif part < 0.65:
                state, tries, outcome = "pending", 6 + n % 4, "retrying"
                retry = text(now + 3600.0 + rng.random() * 3600.0)
                tried = text(now - rng.random() * 600.0)
                error = FAILURES[n % 2]
            elif part < 0.98:
                state, tries, retry, outcome = "waiting", 0, None, "waiting"
                system = MISSING_SYSTEMS[n % len(MISSING_SYSTEMS)]
                error = f"system {system!r} is not in the Control Room"
                waits = waiting_on
                meta = json.dumps({"waiting": {"reason": error, "suggestions": [], "since": tried}})
            else:
                state, tries, retry, outcome = "conflict", 1, None, "conflict"
                haven_id = 100 + n
                error = "the Control Room changed this discovery's row since it was written"
                conflict = {
                    "haven_discovery_id": haven_id,
                    "operation": "write",
                    "ours": {"description": f"growth {n:07d}"},
                    "theirs": {"description": f"growth {n:07d}, edited"},
                    "theirs_hash": f"{n:064x}",
                    "at": tried,
                }
                meta = json.dumps({"conflict": conflict})
        discoveries.append(
            (
                did,
                str(100_000_000_000_000_000 + n % 500),
                f"Explorer {n % 500}",
                "200000000000000002",
                emoji,
                place,
                system,
                f"growth {n:07d}: {field.replace('_', ' ')} of note",
                f"https://cdn.example.org/{n}.png" if n % 3 == 0 else None,
                created[:19],
                f'{{"{field}": "{value}"}}',
                kind,
                haven_id,
            )
        )
        items.append(
            (qid, did, state, tries, tried, retry, error, haven_id, created, synced, meta, waits)
        )
        attempts.append((qid, max(tries, 1), tried, 3 + n % 40, outcome, error, haven_id))
        if len(items) == _CHUNK_ROWS:
            yield discoveries, items, attempts
            discoveries, items, attempts = [], [], []
    if items:
        yield discoveries, items, attempts


def _produce(chunks, handoff: queue.Queue) -> None:
    try:
        for chunk in chunks:
            handoff.put(chunk)
    except BaseException as exc:  # handed to the writer, which raises it
        handoff.put(exc)
    else:
        handoff.put(None)


def queue_fill(
    keeper: Path,
    rows: int,
    *,
    where: list[tuple[str, str, str]] | None = None,
    waiting_on: str | None = None,
    now: float | None = None,
    seed: int = 14,
) -> dict[str, int]:
    """Append ``rows`` queue items, each with its discovery and its last attempt, to the
    migrated keeper.db at ``keeper``, by raw ``executemany`` in one transaction (journal off
    meanwhile, rows made in a second thread while SQLite writes). Returns ``{state: items
    added}``.

    The mix is a queue after 30 days of use: ids in the order of ``created_at``, spread evenly
    over the 30 days before ``now`` (epoch seconds; default: the clock); about 97 % ``synced``
    within seconds of being queued (``synced_at`` over the same 30 days, one attempt, some two
    or three); of the rest, 40 % ``max_retries_exceeded`` (10 attempts, one of :data:`FAILURES`
    as the error), 25 % ``pending`` in backoff (6 to 9 attempts, next retry 1 to 2 hours after
    ``now``, so none is due), 33 % ``waiting`` for one of :data:`MISSING_SYSTEMS` (on catalog
    version ``waiting_on``, which should be VH's, else the next sync wakes them) and 2 % in
    ``conflict``. Discoveries are of the 10 types in turn, placed on ``where`` ((system, place,
    location type), e.g. :func:`bench.harness.places`). The values are valid by construction,
    so CHECK constraints (``JSON_VALID``) are not evaluated during the fill."""
    now = time.time() if now is None else now
    conn = sqlite3.connect(keeper, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        conn.execute("PRAGMA ignore_check_constraints=ON")
        first_d = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM discoveries").fetchone()[0]
        first_q = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM sync_queue").fetchone()[0]
        chunks = _chunks(
            rows,
            first_d=first_d,
            first_q=first_q,
            where=where or [("BENCH PRIME", "Bench Prime I", "planet")],
            waiting_on=waiting_on,
            now=now,
            seed=seed,
        )
        handoff: queue.Queue = queue.Queue(maxsize=8)
        producer = threading.Thread(target=_produce, args=(chunks, handoff), daemon=True)
        producer.start()
        conn.execute("BEGIN")
        while (chunk := handoff.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            discoveries, items, attempts = chunk
            conn.executemany(_DISCOVERY_SQL, discoveries)
            conn.executemany(_QUEUE_SQL, items)
            conn.executemany(_ATTEMPT_SQL, attempts)
        conn.execute("COMMIT")
        producer.join()
        conn.execute("PRAGMA ignore_check_constraints=OFF")
        conn.execute("PRAGMA journal_mode=WAL")
        added = dict(
            conn.execute(
                "SELECT sync_status, COUNT(*) FROM sync_queue WHERE id >= ? GROUP BY sync_status",
                (first_q,),
            )
        )
    finally:
        conn.close()
    return added


# --- the section --------------------------------------------------------------------------------

#: Queue rows at which the drain and the queries are measured; and the same for ``--smoke``.
SIZES = (10_000, 100_000, 1_000_000)
SMOKE_SIZES = (1_000, 3_000, 10_000)
#: New discoveries drained at each size, per run; and for ``--smoke``.
DRAIN = 2_000
SMOKE_DRAIN = 200


def size_label(rows: int) -> str:
    """``10k``, ``1M``: a row count as the table names it."""
    if rows >= 1_000_000 and rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows >= 1_000 and rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


def shell_json(env: dict[str, str], call: str):
    """Run :mod:`bench.queries`'s ``call`` (e.g. ``"probe()"``) in a ``manage.py shell`` on
    ``env``'s files and return what it gives, through one JSON line."""
    code = f"import json, bench.queries as q; print(json.dumps(q.{call}, default=str))"
    done = manage(env, "shell", "-c", code)
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith(("{", "[", '"')):
            return json.loads(line)
    raise RuntimeError(f"no JSON from bench.queries.{call}:\n{done.stdout}{done.stderr}")


@functools.cache
def _store() -> Path:
    """A folder for the files :func:`keeper_filled` makes, removed when this process exits."""
    folder = Path(tempfile.mkdtemp(prefix="keeper-bench-filled-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.cache
def keeper_migrated() -> Path:
    """A keeper.db migrated by ``manage.py migrate``, made once per process, to copy from."""
    keeper = _store() / "keeper-migrated.db"
    manage(manage_env(keeper, vh_copy(_store(), "VH-migrate.db")), "migrate", "--no-input")
    return keeper


@functools.cache
def vh_catalog() -> str:
    """The catalog version of the Control Room's schema fixture (:func:`bench.queries.catalog`),
    what the filled ``waiting`` items wait on."""
    return shell_json(manage_env(keeper_migrated(), _store() / "VH-migrate.db"), "catalog()")


@functools.cache
def keeper_filled(rows: int) -> tuple[Path, float, dict[str, int]]:
    """A migrated keeper.db with ``rows`` queue items by :func:`queue_fill` (placed on the
    fixture's planets and moons, ``waiting`` on its catalog), made once per process for each
    ``rows`` and shared by the sections, to copy with :func:`keeper_copy`, never to use.
    Returns ``(path, seconds the fill took, {state: items})``."""
    keeper = keeper_copy(keeper_migrated(), _store() / f"keeper-{rows}.db")
    started = time.perf_counter()
    added = queue_fill(keeper, rows, where=places(FIXTURE), waiting_on=vh_catalog())
    return keeper, time.perf_counter() - started, added


def keeper_copy(source: Path, target: Path) -> Path:
    """``source``, a keeper.db no process has open, copied to ``target`` with its WAL if any."""
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + "-wal")
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + "-wal"))
    return target


def queue_states(keeper: Path) -> dict[str, int]:
    """``{state: items}`` in ``keeper``'s queue, counted by raw SQL."""
    conn = sqlite3.connect(keeper)
    try:
        return dict(conn.execute("SELECT sync_status, COUNT(*) FROM sync_queue GROUP BY 1"))
    finally:
        conn.close()


#: Drains the queue as ``sync_now --until-idle`` does and prints the seconds it took, so the
#: figure is the drain's own time, without the process's start (about a second).
_DRAIN = (
    "import time; from syncq.services import sync_until_idle; "
    "started = time.perf_counter(); sync_until_idle(); "
    "print(time.perf_counter() - started)"
)


def _drain_seconds(env: dict[str, str]) -> float:
    """Seconds ``sync_until_idle`` took to drain the queue, in a ``manage.py shell`` process."""
    return float(manage(env, "shell", "-c", _DRAIN).stdout.split()[-1])


def _size(folder: Path, rows: int, *, drain: int, runs: int) -> dict:
    """One size: a copy of the filled keeper.db, then ``runs`` times queue ``drain``
    discoveries and drain them; the queries probed once, with the first run's discoveries
    due."""
    filled, filled_s, added = keeper_filled(rows)
    keeper = keeper_copy(filled, folder / "keeper.db")
    haven = vh_copy(folder, "VH-Database.db")
    env = manage_env(keeper, haven)
    where = places(haven)
    rates, probed = [], None
    for number in range(runs):
        submit = folder / f"submit-{number}.json"
        tag = f"g{size_label(rows)}r{number}"
        submit.write_text(json.dumps(entries(drain, where, tag)), encoding="utf-8")
        manage(env, "submit_discovery", "--file", str(submit))
        before = queue_states(keeper)
        if probed is None:
            probed = shell_json(env, "probe()")
        elapsed = _drain_seconds(env)
        after = queue_states(keeper)
        expected = dict(before, synced=before.get("synced", 0) + drain)
        expected["pending"] = before.get("pending", 0) - drain
        if {k: v for k, v in after.items() if v} != {k: v for k, v in expected.items() if v}:
            raise RuntimeError(f"at {rows} rows the drain left {after}, expected {expected}")
        rates.append(drain / elapsed)
        print(
            f"growth {size_label(rows)} run {number + 1}/{runs}: {drain / elapsed:,.0f} items/s",
            file=sys.stderr,
            flush=True,
        )
    return {"rows": rows, "added": added, "fill_s": filled_s, "rates": rates, "probe": probed}


def run(*, smoke: bool, runs: int) -> dict:
    """The growth section: at each of :data:`SIZES` (:data:`SMOKE_SIZES` when ``smoke``) queue
    rows, ``runs`` drains of :data:`DRAIN` new discoveries (items/s), and the claim's and the
    status queries' plans and times (ms); returns ``{"figures": …, "plans": …, "fills": …}``
    for :mod:`bench.__main__`."""
    sizes, drain = (SMOKE_SIZES, SMOKE_DRAIN) if smoke else (SIZES, DRAIN)
    measured = []
    with tempfile.TemporaryDirectory(prefix="keeper-bench-growth-") as name:
        for rows in sizes:
            print(f"growth: {rows:,} queue rows ...", file=sys.stderr, flush=True)
            folder = Path(name) / size_label(rows)
            folder.mkdir()
            measured.append(_size(folder, rows, drain=drain, runs=runs))
            shutil.rmtree(folder)
    return _results(measured, drain=drain, runs=runs)


def _results(measured: list[dict], *, drain: int, runs: int) -> dict:
    figures: dict[str, dict] = {}
    for got in measured:
        label = size_label(got["rows"])
        figures[f"drain_{label}"] = {
            "description": f"drain {drain:,} new items at {label} queue rows",
            "unit": "items/s",
            "median": median(got["rates"]),
            "runs": got["rates"],
        }
    small, large = measured[0], measured[-1]
    ratios = [b / a for a, b in zip(small["rates"], large["rates"], strict=True)]
    figures["drain_ratio"] = {
        "description": f"drain at {size_label(large['rows'])} / drain at "
        f"{size_label(small['rows'])}",
        "unit": "ratio",
        "median": median(ratios),
        "runs": ratios,
        "target": ">= 0.8",
    }
    order: list[tuple[str, str, str]] = []
    for got in measured:
        for query in got["probe"]["queries"]:
            key = (query["source"], query["name"], query["description"])
            if key not in order and (query["source"] != "claim" or query["name"] == "due"):
                order.append(key)
    growth = {}
    for source, name, description in order:
        times = {}
        for got in measured:
            label = size_label(got["rows"])
            for query in got["probe"]["queries"]:
                if (query["source"], query["name"]) == (source, name):
                    times[label] = query["ms"]
                    figures[f"ms_{source}_{name}_{label}"] = {
                        "description": f"{source}: {description} at {label}",
                        "unit": "ms",
                        "median": query["ms"],
                        "runs": query["times_ms"],
                    }
        first, last = size_label(small["rows"]), size_label(large["rows"])
        if times.get(first) and last in times:
            growth[f"{source}.{name}"] = times[last] / times[first]
    plans = {size_label(got["rows"]): got["probe"]["queries"] for got in measured}
    flagged = [
        f"{label} {q['source']}.{q['name']}: {line}"
        for label, queries in plans.items()
        for q in queries
        for line in q["scans"] + q["temp_btree"]
    ]
    return {
        "figures": figures,
        "plans": plans,
        "plan_flags": flagged,
        "query_growth": growth,
        "counts_exact": {size_label(g["rows"]): g["probe"]["counts_exact"] for g in measured},
        "claim_called": measured[0]["probe"]["claim_called"],
        "fills": {
            size_label(g["rows"]): {"rows": g["rows"], "seconds": g["fill_s"], "added": g["added"]}
            for g in measured
        },
        "parameters": {"sizes": [g["rows"] for g in measured], "drain": drain, "runs": runs},
    }
