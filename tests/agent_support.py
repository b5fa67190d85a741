"""The cloud server and the desktop Control Room agent in one test process, for
``tests/test_agent_protocol.py``.

The agent (:class:`syncq.agent_client.HavenAgent`) runs in the test's thread with the desktop's
settings (``USE_HAVEN_DATABASE`` on, ``HAVEN_DB_PATH`` at a VH copy); each of its HTTP calls is
answered by the server's WSGI application on a thread of its own (:class:`ServerTransport`),
under the server's settings (``USE_HAVEN_AGENT`` on, ``USE_HAVEN_DATABASE`` off). Django's
connections belong to a thread, so the server's keeper.db work never happens on the agent's
connections: a test can count the agent's own queries on ``connections["default"]``. Tests that
use it need ``django_db(transaction=True)``: the server's thread reads what the test committed.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.core.wsgi import get_wsgi_application
from django.db import connections
from django.db.backends.signals import connection_created
from django.test import override_settings

from syncq.agent_client import HavenAgent
from syncq.agent_protocol import item_from_wire
from syncq.management.commands.agent_token import agent_token_issue
from syncq.services import Attempted, haven_write_some

SERVER = "http://testserver"
#: The server's view of the world: VH is not here; the queue is left to the agent.
SERVER_SETTINGS = {"USE_HAVEN_AGENT": True, "USE_HAVEN_DATABASE": False}
_SERVER_THREAD = "keeper-server"


def server_side():
    """Run the block as the server would (:data:`SERVER_SETTINGS`): submits, edits and deletes
    made in the cloud."""
    return override_settings(**SERVER_SETTINGS)


@dataclass
class Exchange:
    """One call the agent made: ``method``, ``path``, the JSON ``body`` it sent (``None``
    without one), and the server's ``status`` and JSON ``answer`` (``None`` when not JSON)."""

    method: str
    path: str
    body: object
    status: int
    answer: object


class ServerTransport(httpx.BaseTransport):
    """An httpx transport answering through Keeper Sync's WSGI application on a server thread of
    its own, under ``overrides`` (:data:`SERVER_SETTINGS`; ``{}`` when the test has set the
    server's settings itself), keeping every :class:`Exchange` in ``exchanges``.

    ``before(request)`` (optional) may answer a request itself (an ``httpx.Response``) or
    raise a transport error, instead of the server; ``after(request, response)`` may raise one
    once the server has answered (the answer is then lost on the way). A 5xx fails the test
    at once (the agent would retry it for ever). ``haven_opened`` lists the VH connections the
    server's thread opened: none, ever. :meth:`shutdown` ends the server's thread."""

    def __init__(self, *, overrides: dict | None = None, before=None, after=None):
        self.wsgi = httpx.WSGITransport(app=get_wsgi_application())
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=_SERVER_THREAD)
        self.overrides = SERVER_SETTINGS if overrides is None else overrides
        self.exchanges: list[Exchange] = []
        self.haven_opened: list[str] = []
        self.before = before
        self.after = after
        self._lock = threading.Lock()
        connection_created.connect(self._connection_created, weak=False)

    def _connection_created(self, sender, connection, **kwargs) -> None:
        name = threading.current_thread().name
        if connection.alias == "haven" and name.startswith(_SERVER_THREAD):
            self.haven_opened.append(name)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()
        if self.before is not None and (answer := self.before(request)) is not None:
            return answer
        status, headers, body = self.pool.submit(self._serve, request).result()
        if status >= 500:
            raise AssertionError(f"{request.method} {request.url.path}: {status} {body[:800]!r}")
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            answer = None
        try:
            sent = json.loads(content) if content else None
        except ValueError:
            sent = content
        with self._lock:
            self.exchanges.append(Exchange(request.method, request.url.path, sent, status, answer))
        response = httpx.Response(status, headers=headers, content=body)
        if self.after is not None:
            self.after(request, response)
        return response

    def _serve(self, request: httpx.Request) -> tuple[int, list, bytes]:
        with override_settings(**self.overrides):
            response = self.wsgi.handle_request(request)
            # Read (and so close) the answer here: Django's request_finished, which closes or
            # keeps connections, then runs on the server's thread.
            body = response.read()
        return response.status_code, list(response.headers.multi_items()), body

    def calls(self, path: str) -> list[Exchange]:
        """The exchanges with ``path``, in order."""
        with self._lock:
            return [e for e in self.exchanges if e.path == path]

    def close(self) -> None:
        """Nothing: several clients share this transport (httpx closes it with each)."""

    def shutdown(self) -> None:
        """Close the server thread's connections and end it."""
        connection_created.disconnect(self._connection_created)
        self.pool.submit(connections.close_all).result()
        self.pool.shutdown()


def agent_token(name: str = "desktop") -> str:
    """The token of agent ``name``, as ``manage.py agent_token name`` makes it (the same one
    on every call)."""
    key, _ = agent_token_issue(name)
    return key


def agent_make(
    transport: ServerTransport, state_path: Path, *, token: str | None = None
) -> HavenAgent:
    """A new run of the Control Room agent calling the server through ``transport``, its
    state file at ``state_path`` (``token``: agent ``desktop``'s by default)."""
    return HavenAgent(
        server=SERVER, token=token or agent_token(), state_path=state_path, transport=transport
    )


def api(transport: httpx.BaseTransport, token: str | None) -> httpx.Client:
    """An HTTP client of the server through ``transport``, sending ``token`` (none: no
    credentials)."""
    headers = {"Authorization": f"Token {token}"} if token else {}
    return httpx.Client(base_url=SERVER, transport=transport, headers=headers)


def lease_take(agent: HavenAgent) -> dict:
    """One round of ``agent`` (heartbeat, catalog, lease) that stops before writing: the
    lease's ``{"lease": token, "items": [...]}``, as the agent asked for it."""
    taken: dict = {}

    def keep(token, items, report):
        taken.update(lease=token, items=items)

    agent.items_write = keep
    try:
        agent.run_round(wait=False)
    finally:
        del agent.items_write
    assert taken, "the lease took no item"
    return taken


def leased_write(wire_items: list[dict]) -> list[Attempted]:
    """Write leased items into the desktop's VH as the agent does, reporting nothing: what a
    run killed between VH's commit and its acknowledgement leaves behind."""
    rest, attempted = [item_from_wire(data) for data in wire_items], []
    while rest:
        done = haven_write_some(rest)
        attempted.extend(done)
        rest = rest[len(done) :]
    return attempted
