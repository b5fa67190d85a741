"""The Control Room agent as a desktop runs it: ``manage.py haven_agent`` against a real server
process on loopback, with nothing of the server's on the desktop (no keeper.db, no Redis, no
SECRET_KEY), nothing Linux-only on its path, and the Windows batch file that starts it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.process_support import free_port, health, wait_until

FIXTURE = ROOT / "examples" / "vh_control_room_schema.db"
SAMPLE = ROOT / "examples" / "discoveries-sample.json"
PYTHON = sys.executable


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(KEEPER_ENV_FILE="", **values)
    return env


def _manage(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cloud(tmp_path):
    """A cloud side on loopback: a migrated keeper.db in agent mode, the sample's ten
    discoveries submitted, an agent token, and gunicorn serving it. Yields ``(url, token,
    env)``."""
    folder = tmp_path / "cloud"
    folder.mkdir()
    env = _env(
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="false",
        KEEPER_DB_PATH=str(folder / "keeper.db"),
        CACHE_URL=f"filecache://{folder / 'cache'}",
        USE_HAVEN_DATABASE="false",
        USE_HAVEN_AGENT="true",
        HAVEN_DB_PATH=str(folder / "no-VH-here.db"),
    )
    for args in (("migrate", "--no-input"), ("submit_discovery", "--file", str(SAMPLE))):
        done = _manage(env, *args)
        assert done.returncode == 0, done.stderr
    made = _manage(env, "agent_token", "desktop")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(PYTHON).with_name("gunicorn")),
            "keeper_site.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--threads",
            "4",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "server.log", "w"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )
    try:
        wait_until(lambda: health(port), timeout=60, what="the server's /health")
        yield f"http://127.0.0.1:{port}", token, env
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert not (folder / "no-VH-here.db").exists(), "the server opened VH"


def _synced(env: dict) -> int:
    with sqlite3.connect(f"file:{env['KEEPER_DB_PATH']}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT COUNT(*) FROM sync_queue WHERE sync_status = 'synced'"
        ).fetchone()[0]


def test_the_agent_runs_with_nothing_of_the_servers_and_writes_each_discovery_once(cloud, tmp_path):
    """``haven_agent --once`` with only the server's address, the token and VH's path: the
    sample's ten discoveries are in VH once, a second round writes nothing more, the agent's
    state is a small file, and no keeper.db is made on the desktop."""
    url, token, server_env = cloud
    desk = tmp_path / "desk"
    desk.mkdir()
    haven = desk / "VH-Database.db"
    shutil.copy(FIXTURE, haven)
    with sqlite3.connect(haven) as db:
        before = db.execute("SELECT COUNT(*) FROM discoveries").fetchone()[0]
    env = {
        k: v
        for k, v in _env(HAVEN_DB_PATH=str(haven), KEEPER_DB_PATH=str(desk / "keeper.db")).items()
        if k not in ("SECRET_KEY", "DATABASE_URL", "Q_REDIS_URL")
    }
    for _ in range(2):
        done = _manage(
            env,
            "haven_agent",
            "--server",
            url,
            "--token",
            token,
            "--state",
            str(desk / "a.json"),
            "--once",
        )
        assert done.returncode == 0, done.stderr
    with sqlite3.connect(haven) as db:
        after = db.execute("SELECT COUNT(*) FROM discoveries").fetchone()[0]
        ledger = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT keeper_discovery_id) FROM keeper_sync_ledger"
        ).fetchone()
    assert after - before == 10
    assert ledger == (10, 10)
    assert _synced(server_env) == 10
    assert not (desk / "keeper.db").exists()
    state = json.loads((desk / "a.json").read_text())
    assert set(state) == {"agent_id", "catalog"} and len(state["agent_id"]) == 32
    assert (desk / "a.json").stat().st_size < 64 * 1024


def test_a_wrong_token_stops_the_agent_with_a_clear_error(cloud, tmp_path):
    """A token the server refuses ends the agent at once (exit 1, saying so), instead of
    retrying forever."""
    url, _, _ = cloud
    haven = tmp_path / "VH-Database.db"
    shutil.copy(FIXTURE, haven)
    done = _manage(
        _env(HAVEN_DB_PATH=str(haven)),
        "haven_agent",
        "--server",
        url,
        "--token",
        "0" * 40,
        "--state",
        str(tmp_path / "a.json"),
        "--once",
    )
    assert done.returncode == 1
    assert "the server refused the agent" in done.stderr and "401" in done.stderr


LINUX_ONLY = ("fcntl", "termios", "resource", "pwd", "grp", "_posixshmem")


def test_nothing_linux_only_is_on_the_agents_path(tmp_path):
    """With the modules Windows lacks made unimportable, the agent's settings load, its
    command and client import, and its writer writes a leased item into VH."""
    haven = tmp_path / "VH-Database.db"
    shutil.copy(FIXTURE, haven)
    script = f"""
import sys
for name in {LINUX_ONLY!r}:
    sys.modules[name] = None
import django
django.setup()
import syncq.management.commands.haven_agent
from syncq.agent_protocol import item_from_wire
from syncq.services import haven_write_some
item = item_from_wire({{
    "id": 1, "discovery_id": 7, "operation": "write", "attempt": 1, "haven_discovery_id": None,
    "metadata": {{"origin": "submitted"}}, "digest": "0" * 64,
    "discovery": {{
        "id": 7, "user_id": "1", "username": "u", "guild_id": None, "discovery_type": "🦴",
        "location": "Krospen L49", "system_name": "Oculi", "time_period": None,
        "condition": None, "description": "bones", "significance": None, "evidence_url": None,
        "related_discoveries": None, "coordinates": None, "planet_name": None,
        "galaxy_name": None, "submission_timestamp": "2026-01-02T03:04:05+00:00",
        "analysis_status": "pending", "pattern_matches": 0, "mystery_tier": 0, "tags": None,
        "metadata": {{}}, "location_type": "planet", "haven_discovery_id": None,
        "submission_key": None,
    }},
}})
[attempted] = haven_write_some([item])
assert attempted.error is None, attempted.error
print(attempted.outcome.how, attempted.outcome.haven_discovery_id)
"""
    done = subprocess.run(
        [PYTHON, "-c", script],
        cwd=ROOT,
        env=_env(HAVEN_DB_PATH=str(haven), DJANGO_SETTINGS_MODULE="keeper_site.agent_settings"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    how, haven_id = done.stdout.split()
    assert how == "written" and int(haven_id) > 0


def test_the_windows_batch_file_runs_the_agent_with_crlf_lines():
    """``deploy/haven-agent.bat`` keeps CRLF line endings (cmd.exe misreads labels without
    them), makes the venv once and passes its arguments to ``manage.py haven_agent``."""
    raw = (ROOT / "deploy" / "haven-agent.bat").read_bytes()
    lines = raw.split(b"\r\n")
    assert b"\n" not in b"".join(lines), "a line ends in LF alone"
    text = raw.decode("ascii")
    assert "manage.py haven_agent %*" in text
    assert "-m venv .venv" in text and "-r requirements.txt" in text
    assert (ROOT / ".gitattributes").read_text().count("*.bat text eol=crlf") == 1
