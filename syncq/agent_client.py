"""The Control Room agent: the desktop side of the cloud setup (``manage.py haven_agent``).

It runs beside the Control Room, opens VH-Database.db as a file and only calls out, over HTTP(S),
to the server that hosts the bot (:mod:`syncq.agent_api`); nothing on the desktop listens. Each
round it:

1. sends a heartbeat (what it finds of VH, its version) every :data:`HEARTBEAT_SECONDS`;
2. uploads VH's catalog (systems, planets, moons) when it differs from the one the server
   keeps: a diff against the catalog it last uploaded, or the whole catalog when the server
   keeps another (:func:`discoveries.haven.catalog.catalog_diff`);
3. leases due items, waiting on the server up to :data:`LONG_POLL_SECONDS` for one (a long
   poll, so a discovery submitted in the cloud reaches VH within about a second);
4. writes them into VH with the local worker's own writer
   (:func:`syncq.services.haven_write_some`: the ledger makes each write exactly once, even
   after a ``kill -9`` between the VH commit and the acknowledgement), then acknowledges the
   outcomes and reports the failures.

Network errors, timeouts, 5xx and 429 are retried with exponential backoff (capped at
:data:`BACKOFF_MAX_SECONDS`, ``Retry-After`` honoured); a refused token stops the agent. Its only
state is a small JSON file (``AGENT_STATE_PATH``): its id and the catalog it last uploaded.
Nothing here is specific to one operating system.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError

from discoveries.haven.catalog import (
    CatalogInvalid,
    catalog_canonical,
    catalog_content_hash,
    catalog_diff,
    catalog_snapshot,
    catalog_version,
)
from discoveries.haven.connection import haven_close, haven_connection, haven_probe
from discoveries.haven.errors import HavenError
from syncq.agent_protocol import (
    PROTOCOL_VERSION,
    WireInvalid,
    item_from_wire,
    outcome_to_wire,
)
from syncq.services import Attempted, haven_write_some

logger = logging.getLogger(__name__)

#: The agent's version, sent with each heartbeat.
AGENT_VERSION = "0.1.0"
#: How often the agent says it is alive, at least, in seconds.
HEARTBEAT_SECONDS = 15.0
#: How often VH's catalog is read to see whether it changed, in seconds.
CATALOG_CHECK_SECONDS = 5.0
#: The longest the agent asks the server to wait for a due item, in seconds (the server caps it
#: at its ``HAVEN_AGENT_POLL_SECONDS``); the catalog is checked between polls.
LONG_POLL_SECONDS = 5.0
#: The first wait after a failed call, and the longest, in seconds.
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 10.0
#: How long one call may take beyond the server's own wait, in seconds.
CALL_TIMEOUT_SECONDS = 30.0
#: How many items one lease asks for.
LEASE_LIMIT = 200
#: The longest a ``Retry-After`` makes the agent wait, in seconds: a lockout of the address
#: (``API_AUTH_FAILURE_LIMIT``) may be lifted early (``manage.py axes_reset``), and a call
#: while it lasts is refused without extending it.
RETRY_AFTER_MAX_SECONDS = 30.0


class AgentRefused(Exception):
    """The server refused the agent's token (401, 403) or does not speak its protocol (404,
    400 on a request the agent made itself): retrying cannot help."""


class AgentStopped(Exception):
    """The agent was asked to stop while it waited."""


class _Encoder(DjangoJSONEncoder):
    """JSON for the wire: times as ISO 8601, bytes (a BLOB where VH keeps text) as text."""

    def default(self, o):
        if isinstance(o, bytes | bytearray | memoryview):
            return bytes(o).decode("utf-8", "replace")
        return super().default(o)


#: What an agent id may be: the server takes it as part of its leases' holder.
AGENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _catalog_base(catalog: object) -> dict | None:
    """The catalog a state file holds, when it is whole and hashes to its ``content_hash``
    (the base of the next diff); else ``None`` (the next upload is the whole catalog)."""
    if not isinstance(catalog, dict):
        return None
    try:
        snapshot = catalog_canonical(catalog["snapshot"])
        if catalog_content_hash(snapshot) != catalog["content_hash"]:
            return None
        return {**catalog, "snapshot": snapshot}
    except (KeyError, TypeError, CatalogInvalid):
        return None


@dataclass
class AgentState:
    """The agent's own state, kept in a JSON file at ``path``: ``agent_id`` (made once) and the
    ``catalog`` it last uploaded (``{"content_hash", "version", "snapshot"}``), the base of the
    next diff. A file that cannot be read, or holds something else, starts the state afresh
    (logged); one that cannot be written raises ``OSError`` at :meth:`load`."""

    path: Path
    agent_id: str = ""
    catalog: dict | None = None

    @classmethod
    def load(cls, path: Path) -> AgentState:
        state = cls(path=path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            agent_id = str(data.get("agent_id") or "")
            state.agent_id = agent_id if AGENT_ID.fullmatch(agent_id) else ""
            state.catalog = _catalog_base(data.get("catalog"))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            logger.warning("agent state %s cannot be read (%s): starting afresh", path, exc)
        if not state.agent_id:
            state.agent_id = uuid.uuid4().hex
            state.save()
        return state

    def save(self) -> None:
        """Write the state atomically (a temporary file beside it, then a rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"agent_id": self.agent_id, "catalog": self.catalog})
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".haven-agent-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _refusal(method: str, path: str, response: httpx.Response) -> str:
    """What to tell the operator of a 401, 403 or 404: the answer's ``detail``, or for a page
    that is not the API's, which setting to look at."""
    try:
        detail = response.json().get("detail") or response.text[:300]
    except (ValueError, AttributeError):
        detail = "not Keeper Sync's API: is the server's address right (no path after it)?"
    return f"{method} {path}: the server answered {response.status_code}: {detail}"


def backoff_seconds(attempt: int) -> float:
    """The wait after the ``attempt``-th failed call in a row (0-based): doubling from
    :data:`BACKOFF_FIRST_SECONDS` up to :data:`BACKOFF_MAX_SECONDS`, with half of it random so
    that agents cut off together do not come back together."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** min(attempt, 16))
    return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 - jitter, not secrecy


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


class AgentConnection:
    """Calls to the server, retried until they get an answer that is not a fault of the way:
    a 2xx, a 409 or a 400 is returned; transport errors, timeouts, 5xx and 429 wait
    (:func:`backoff_seconds`, or ``Retry-After``) and try again until ``stop`` is set
    (:class:`AgentStopped`); 401, 403 and 404 raise :class:`AgentRefused`."""

    def __init__(self, server: str, token: str, *, stop: threading.Event, transport=None):
        self.stop = stop
        self.client = httpx.Client(
            base_url=server.rstrip("/"),
            headers={
                "Authorization": f"Token {token}",
                "User-Agent": f"keeper-sync-agent/{AGENT_VERSION}",
                "Content-Type": "application/json",
            },
            transport=transport,
        )
        self.failures = 0

    def close(self) -> None:
        self.client.close()

    def call(
        self, method: str, path: str, body: dict, *, wait_seconds: float = 0
    ) -> httpx.Response:
        """``method path`` with JSON ``body``; ``wait_seconds`` is how long the server may hold
        the request (a long poll), added to the timeout."""
        content = json.dumps(body, cls=_Encoder)
        timeout = httpx.Timeout(CALL_TIMEOUT_SECONDS + wait_seconds, connect=10.0)
        attempt = 0
        while True:
            # Once stopping, a call is still tried once (the report of what is in VH), never
            # again after a failure.
            wait = None
            try:
                response = self.client.request(method, path, content=content, timeout=timeout)
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in (401, 403, 404):
                    raise AgentRefused(_refusal(method, path, response))
                if response.status_code < 500 and response.status_code != 429:
                    if self.failures:
                        logger.info("the server answers again")
                    self.failures = 0
                    return response
                why = f"HTTP {response.status_code}"
                wait = _retry_after(response)
            self.failures += 1
            delay = max(min(wait or 0.0, RETRY_AFTER_MAX_SECONDS), backoff_seconds(attempt))
            attempt += 1
            logger.warning("%s %s failed (%s); again in %.1f s", method, path, why, delay)
            if self.stop.wait(delay):
                raise AgentStopped


@dataclass
class RoundReport:
    """What one round of :meth:`HavenAgent.run_round` did: items ``leased``, ``acknowledged``,
    ``failed`` (reported as failures), ``dropped`` (their lease was stale: the server takes
    them back), and whether the catalog was ``uploaded``."""

    leased: int = 0
    acknowledged: int = 0
    failed: int = 0
    dropped: int = 0
    uploaded: bool = False
    errors: list[str] = field(default_factory=list)


class HavenAgent:
    """The agent's loop against ``server`` with ``token``, its state in ``state_path``.

    :meth:`run` goes round until ``stop`` is set (``once``: one round without waiting on the
    server). Raises :class:`AgentRefused` when the server refuses it."""

    def __init__(
        self,
        *,
        server: str,
        token: str,
        state_path: Path,
        stop: threading.Event | None = None,
        transport=None,
    ):
        self.stop = stop or threading.Event()
        self.state = AgentState.load(Path(state_path))
        self.connection = AgentConnection(server, token, stop=self.stop, transport=transport)
        self.instance = uuid.uuid4().hex
        self.server_catalog: str | None = None
        #: The content hash of VH's catalog as last read here.
        self.catalog_hash: str | None = None
        #: What the last heartbeat found of VH (:func:`~discoveries.haven.connection.haven_probe`).
        self.vh_state = ""
        #: The content hash of a catalog the server refused (too large, say): not sent again.
        self._catalog_refused: str | None = None
        self.poll_seconds = LONG_POLL_SECONDS
        self._beat_at = 0.0
        self._catalog_at = 0.0
        self._vh_detail = ""
        #: Why the catalog could not be read or sent, if it could not ("" when it was).
        self.catalog_detail = ""

    def close(self) -> None:
        self.connection.close()

    def run(self, *, once: bool = False) -> RoundReport | None:
        """Go round until stopped (or once); returns when ``stop`` is set, with the report of
        the last round (``None`` when none ended)."""
        failures = 0
        report = None
        try:
            while not self.stop.is_set():
                try:
                    report = self.run_round(wait=not once)
                except (AgentRefused, AgentStopped):
                    raise
                except Exception:
                    if once:
                        raise
                    # Whatever went wrong in this round (an answer that is not JSON, a bug),
                    # the agent stays up and tries again; the leases it held come back.
                    logger.exception("the round failed; trying again")
                    failures += 1
                    if self.stop.wait(backoff_seconds(failures)):
                        return
                    continue
                failures = 0
                if once:
                    return report
        except AgentStopped:
            return report
        return report

    def run_round(self, *, wait: bool = True) -> RoundReport:
        """One round: heartbeat and catalog when due, one lease, its writes and reports."""
        report = RoundReport()
        now = time.monotonic()
        if not wait or now - self._beat_at >= HEARTBEAT_SECONDS:
            self.heartbeat()
        if not wait or now - self._catalog_at >= CATALOG_CHECK_SECONDS:
            report.uploaded = self.catalog_sync()
        if self.stop.is_set():
            raise AgentStopped
        body = {
            "instance": self.instance,
            "agent_id": self.state.agent_id,
            "limit": LEASE_LIMIT,
            "wait_seconds": min(self.poll_seconds, LONG_POLL_SECONDS) if wait else 0,
        }
        response = self.connection.call(
            "POST", "/agent/lease", body, wait_seconds=body["wait_seconds"]
        )
        self._expect(response, "lease")
        lease = response.json()
        if not lease.get("items"):
            return report
        self.items_write(lease["lease"], lease["items"], report)
        return report

    def _expect(self, response: httpx.Response, what: str) -> None:
        if response.status_code >= 300:
            raise AgentRefused(
                f"{what}: the server answered {response.status_code} {response.text[:300]}"
            )

    # --- heartbeat and catalog ---------------------------------------------------------------

    def heartbeat(self) -> dict:
        """Tell the server this run is alive and what it finds of VH; learn the catalog the
        server keeps and its longest poll."""
        state = haven_probe()
        self.vh_state = state
        body = {
            "instance": self.instance,
            "agent_id": self.state.agent_id,
            "version": AGENT_VERSION,
            "host": socket.gethostname()[:255],
            "vh_state": state if state in ("ok", "missing", "locked", "disabled") else "error",
            "vh_detail": "; ".join(d for d in (self._vh_detail, self.catalog_detail) if d)[:2000],
            "catalog_hash": self.catalog_hash or "",
            "protocol": PROTOCOL_VERSION,
        }
        response = self.connection.call("POST", "/agent/heartbeat", body)
        self._expect(response, "heartbeat")
        answer = response.json()
        self.server_catalog = answer.get("catalog_hash")
        self.poll_seconds = float(answer.get("poll_seconds") or LONG_POLL_SECONDS)
        self._beat_at = time.monotonic()
        if answer.get("released"):
            logger.info(
                "the server took back %s items leased before this start", answer["released"]
            )
        return answer

    def catalog_sync(self) -> bool:
        """Upload VH's catalog if it differs from the server's: a diff against the catalog
        last uploaded when the server keeps that one, else the whole. Returns whether it
        uploaded. VH that cannot be read uploads nothing (logged)."""
        self._catalog_at = time.monotonic()
        try:
            haven_connection()
            snapshot = catalog_snapshot()
            version = catalog_version()
        except (HavenError, DatabaseError, CatalogInvalid) as exc:
            # The writes go on without it: the server keeps the catalog it has.
            self.catalog_detail = f"catalog: {type(exc).__name__}: {exc}"
            logger.warning("VH's catalog cannot be read: %s", exc)
            return False
        finally:
            haven_close()
        content_hash = catalog_content_hash(snapshot)
        self.catalog_hash = content_hash
        if content_hash != self._catalog_refused:
            self.catalog_detail = ""
        if content_hash == self.server_catalog:
            return False
        body: dict = {"content_hash": content_hash, "version": version}
        base = self.state.catalog
        if base and base.get("content_hash") == self.server_catalog:
            body.update(
                base_hash=base["content_hash"], diff=catalog_diff(base["snapshot"], snapshot)
            )
        else:
            body["full"] = snapshot
        if content_hash == self._catalog_refused:
            return False  # refused as it is: tried again once the map changes
        response = self.connection.call("PUT", "/agent/catalog", body)
        if response.status_code in (400, 409) and "diff" in body:
            body = {"content_hash": content_hash, "version": version, "full": snapshot}
            response = self.connection.call("PUT", "/agent/catalog", body)
        if response.status_code >= 300:
            # Too large, or refused: the writes go on, and the map is sent again once it changes.
            self._catalog_refused = content_hash
            self.catalog_detail = f"catalog upload refused: HTTP {response.status_code}"
            logger.warning(
                "the server refused VH's catalog (%s): %s",
                response.status_code,
                response.text[:300],
            )
            return False
        self.server_catalog = content_hash
        self.state.catalog = {
            "content_hash": content_hash,
            "version": version,
            "snapshot": snapshot,
        }
        try:
            self.state.save()
        except OSError as exc:
            # Kept in memory: the next start uploads the whole catalog once.
            logger.warning("the agent's state file cannot be written: %s", exc)
        logger.info("uploaded VH's catalog (%s systems)", len(snapshot["systems"]))
        return True

    # --- items -------------------------------------------------------------------------------

    def items_write(self, token: str, wire_items: list, report: RoundReport) -> None:
        """Write the leased ``wire_items`` into VH a VH transaction at a time
        (:func:`syncq.services.haven_write_some`), reporting each transaction's outcomes and
        failures under lease ``token`` as soon as it has committed, so that a long lease keeps
        its lease alive and a kill loses at most one transaction's reports. Once the agent is
        stopping, no further transaction starts: the items not started come back to the queue
        when it starts again. Items it cannot read are reported as failures."""
        items = []
        report.leased = len(wire_items)
        logger.info("lease %s: %s items to write", token, len(wire_items))
        for data in wire_items:
            try:
                items.append(item_from_wire(data))
            except WireInvalid as exc:
                logger.warning("a leased item cannot be read: %s", exc)
                report.errors.append(str(exc))
                self._unreadable_report(token, data, exc, report)
        rest = items
        while rest:
            if self.stop.is_set():
                logger.info(
                    "lease %s: stopping; %s items not started go back to the queue",
                    token,
                    len(rest),
                )
                return
            done = haven_write_some(rest)
            rest = rest[len(done) :]
            self._transaction_report(token, done, report)

    def _transaction_report(self, token: str, done: list[Attempted], report: RoundReport) -> None:
        """Report one VH transaction's ``done`` items: outcomes to ``/agent/ack``, failures to
        ``/agent/fail``."""
        errors = [a.error for a in done if a.error]
        self._vh_detail = errors[-1] if errors else ""
        written = [a for a in done if a.error is None]
        failed = [a for a in done if a.error is not None]
        logger.info(
            "lease %s: %s written or held in VH, %s failed; reporting",
            token,
            len(written),
            len(failed),
        )
        if settings.SYNC_CHAOS_PAUSE_SECONDS:
            # Fault injection: a window between VH's commit and the report for a kill to land in.
            time.sleep(settings.SYNC_CHAOS_PAUSE_SECONDS)
        if written:
            recorded, dropped = self._report(token, "/agent/ack", written)
            report.acknowledged += recorded
            report.dropped += dropped
        if failed:
            recorded, dropped = self._report(token, "/agent/fail", failed)
            report.failed += recorded
            report.dropped += dropped

    def _unreadable_report(self, token: str, data: object, exc: Exception, report) -> None:
        """Report a leased item this agent cannot read as a failure, when it names itself well
        enough (its id, operation and digest); else it comes back with the next lease."""
        if not isinstance(data, dict):
            return
        row = {
            "id": data.get("id"),
            "operation": data.get("operation"),
            "digest": data.get("digest"),
            "started_at": None,
            "error": f"the Control Room agent cannot read this item: {exc}"[:10_000],
        }
        body = {"instance": self.instance, "lease": token, "results": [row]}
        response = self.connection.call("POST", "/agent/fail", body)
        if response.status_code == 200:
            report.failed += 1

    def _report(self, token: str, path: str, attempted: list[Attempted]) -> tuple[int, int]:
        """Send ``attempted`` to ``path``; on a 409, send again those still held. Outcomes the
        server refuses (400: a value it cannot keep) are reported as failures instead, so the
        items follow the backoff where operators see them. A body too large for the server
        (413) is sent in halves; one item's outcome too large alone is reported as a failure.
        Returns ``(recorded, dropped)``."""
        rows = {a.item.id: self._result(a) for a in attempted}
        while rows:
            body = {"instance": self.instance, "lease": token, "results": list(rows.values())}
            response = self.connection.call("POST", path, body)
            if response.status_code == 409:
                held = set(response.json().get("held") or [])
                dropped = [item_id for item_id in rows if item_id not in held]
                logger.warning(
                    "lease %s: items %s were taken back meanwhile; the server has them again",
                    token,
                    ", ".join(map(str, dropped)),
                )
                rows = {item_id: row for item_id, row in rows.items() if item_id in held}
                if not rows:
                    return 0, len(dropped)
                continue
            left = [a for a in attempted if a.item.id in rows]
            if response.status_code == 413 and len(left) > 1:
                half = len(left) // 2
                first = self._report(token, path, left[:half])
                second = self._report(token, path, left[half:])
                return first[0] + second[0], first[1] + second[1]
            if response.status_code in (400, 413) and path == "/agent/ack":
                why = "too large to send" if response.status_code == 413 else "refused"
                refused = f"the server {why} this outcome: {response.text[:2000]}"
                logger.warning("lease %s: %s", token, refused)
                failures = [Attempted(a.item, a.started_at, error=refused) for a in left]
                return self._report(token, "/agent/fail", failures)
            if response.status_code in (400, 413):
                # Nothing more to say about these: the next lease takes them back.
                logger.warning("lease %s: %s refused: %s", token, path, response.text[:300])
                return 0, len(rows)
            self._expect(response, path)
            logger.info("lease %s: %s reported to %s", token, len(rows), path)
            return len(rows), len(attempted) - len(rows)
        return 0, len(attempted)

    @staticmethod
    def _result(a: Attempted) -> dict:
        started = a.started_at.astimezone(UTC).isoformat() if a.started_at else None
        row = {
            "id": a.item.id,
            "operation": a.item.operation,
            "digest": a.item.digest,
            "started_at": started,
        }
        if a.error is not None:
            row["error"] = a.error[:10_000]
        else:
            row["outcome"] = outcome_to_wire(a.outcome)
        return row


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)
