"""The container of the cloud side: what the Dockerfile, railway.json and the Procfile say, and
their start commands run as they are (no container engine here) on a data folder like the
image's volume: migrations applied, ``/health`` answering, the bot connected, and everything
stopped within 10 s of SIGTERM; the split mode's web and worker apart on PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import sqlite3
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import load_command_class

from tests.conftest import ROOT, manage_env, run_manage
from tests.fake_discord import FakeDiscord
from tests.process_support import (
    alive_in_sessions,
    cleanup,
    free_port,
    health,
    processes,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; children die with it on Linux"
)

#: What the whole stop may take, from SIGTERM to the last process of the tree gone: the 10 s a
#: container engine waits before it kills (``docker stop``).
STOP_LIMIT_SECONDS = 10
POSTGRES = os.environ.get("KEEPER_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")
REDIS = "redis://127.0.0.1:6379/12"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of each instruction of the Dockerfile at ``path``, in
    order, its continuation lines joined and comment lines dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        found.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    return found


DOCKERFILE = _instructions(ROOT / "Dockerfile")


def _last(keyword: str) -> str:
    """The arguments of the Dockerfile's last ``keyword`` instruction (the one in force)."""
    found = [rest for name, rest in DOCKERFILE if name == keyword]
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def _image_env() -> dict[str, str]:
    """The variables the Dockerfile's ``ENV`` instructions set (``NAME=value`` forms)."""
    found: dict[str, str] = {}
    for name, rest in DOCKERFILE:
        if name == "ENV":
            found.update(item.split("=", 1) for item in rest.split())
    return found


#: The container's start command: its ENTRYPOINT followed by its CMD, both in exec form.
START = json.loads(_last("ENTRYPOINT")) + json.loads(_last("CMD"))


def _runservice_options(argv: list[str]):
    """The options ``manage.py runservice`` reads from ``argv`` (a command line from
    ``python manage.py runservice``); fails the test when it names another command."""
    assert argv[:3] == ["python", "manage.py", "runservice"], argv
    parser = load_command_class("syncq", "runservice").create_parser("manage.py", "runservice")
    return parser.parse_args(argv[3:])


def _secret_key() -> str:
    """50 random letters and digits, a key the settings accept with DEBUG off."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(50))


def _container_env(folder: Path, **extra: str) -> dict[str, str]:
    """The environment the container gives its start command, with ``folder/app/data`` for
    the volume at /app/data: the image's ``ENV`` (its ``PORT`` replaced by a free port), a
    server's settings (DEBUG off, a random SECRET_KEY, ALLOWED_HOSTS=127.0.0.1, no
    VH-Database.db), ``python`` found first in this test run's environment, and ``extra``."""
    data = folder / "app" / "data"
    data.mkdir(parents=True)
    home = folder / "home"
    home.mkdir()
    env = manage_env(keeper=data / "keeper.db", haven=data / "VH-Database.db")
    del env["HAVEN_DB_PATH"]
    env.update(_image_env())
    env.update(
        KEEPER_DB_PATH=str(data / "keeper.db"),
        CACHE_URL=f"filecache://{data / 'cache'}",
        PORT=str(free_port()),
        SECRET_KEY=_secret_key(),
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1",
        USE_HAVEN_DATABASE="false",
        HOME=str(home),
        XDG_RUNTIME_DIR=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(extra)
    return env


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``argv`` from the project folder (the image's /app) in a session of its own, as a
    container's first process is, its output (both streams) in ``log``."""
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _children_sessions(service: subprocess.Popen) -> set[int]:
    """The sessions of ``service``'s children (each child of runservice has one)."""
    return {pid for pid, parent, _, _ in processes() if parent == service.pid}


def _sigterm_stop(service: subprocess.Popen, sessions: set[int]) -> tuple[int, float]:
    """SIGTERM to ``service``'s process alone, as a container engine sends it to the
    container's first process; returns its exit code and the seconds until neither it nor
    any process in ``sessions`` was left."""
    began = time.monotonic()
    service.send_signal(signal.SIGTERM)
    code = service.wait(timeout=60)
    wait_until(
        lambda: not alive_in_sessions(sessions),
        timeout=60,
        what="processes of the stopped service still run",
        interval=0.05,
    )
    return code, time.monotonic() - began


def _healthcheck(env: dict[str, str]) -> int:
    """The exit code of the Dockerfile's HEALTHCHECK command, run with ``env``."""
    argv = json.loads(_last("HEALTHCHECK").split(" CMD ", 1)[1])
    return subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False).returncode


def _serving(port: int) -> dict | None:
    """``/health`` once it answers 200 and the sync worker reports running."""
    body = health(port)
    return body if body and body.get("sync_worker_running") else None


def test_the_image_runs_as_keeper_with_keeper_db_on_its_volume_and_checks_health():
    """The Dockerfile: Python 3.11 slim, a user other than root, keeper.db on the volume at
    /app/data, the port from PORT (8000 by default), the static files collected at build, a
    HEALTHCHECK asking /health with Python alone, and a start command that migrates and runs
    the web server, the worker and the bot."""
    env = _image_env()
    assert _last("FROM") == "python:3.11-slim"
    assert _last("USER") not in ("root", "0", "0:0")
    assert env["KEEPER_DB_PATH"] == "/app/data/keeper.db"
    assert "/app/data" in json.loads(_last("VOLUME"))
    assert (env["PORT"], _last("EXPOSE")) == ("8000", "${PORT}")
    runs = " && ".join(rest for name, rest in DOCKERFILE if name == "RUN")
    assert "pip install -r requirements.txt" in runs and "collectstatic --no-input" in runs
    check = json.loads(_last("HEALTHCHECK").split(" CMD ", 1)[1])
    assert check[:2] == ["python", "-c"] and "urllib" in check[2] and "/health" in check[2]
    assert START[:2] == ["python", "deploy/entrypoint.py"]
    options = _runservice_options(START[2:])
    assert (options.migrate, options.bot, options.only) == (True, True, None)


def _procfile() -> dict[str, list[str]]:
    """The Procfile's ``{kind: command line}``."""
    lines = (ROOT / "Procfile").read_text(encoding="utf-8").splitlines()
    return {kind: command.split() for kind, command in (line.split(":", 1) for line in lines)}


def _railway(path: str) -> dict:
    return json.loads((ROOT / path).read_text(encoding="utf-8"))


def test_railway_starts_the_containers_command_probes_health_and_lets_it_stop():
    """railway.json builds the Dockerfile, starts the container's own command, probes /health,
    restarts on failure, and leaves the stop more than its 10 s before SIGKILL."""
    railway = _railway("railway.json")
    assert railway["build"]["builder"] == "DOCKERFILE"
    deploy = railway["deploy"]
    assert deploy["startCommand"].split() == START
    assert deploy["healthcheckPath"] == "/health"
    assert deploy["restartPolicyType"] == "ON_FAILURE"
    assert deploy["drainingSeconds"] > STOP_LIMIT_SECONDS


def test_the_split_modes_services_each_run_one_part_migrating_first():
    """The Procfile's web, worker and bot lines each run one part of runservice alone,
    migrating first; the Railway config file of each part starts that same line, and only
    the web server's is probed on /health."""
    procfile = _procfile()
    assert set(procfile) == {"web", "worker", "bot"}
    for kind, argv in procfile.items():
        options = _runservice_options(argv)
        assert (options.only, options.migrate, options.bot) == (kind, True, False)
        railway = _railway(f"deploy/railway/{kind}.json")
        assert railway["build"]["builder"] == "DOCKERFILE"
        deploy = railway["deploy"]
        assert deploy["startCommand"].split() == argv
        assert deploy.get("healthcheckPath") == ("/health" if kind == "web" else None)
        assert deploy["drainingSeconds"] > STOP_LIMIT_SECONDS


def test_the_image_leaves_out_local_state_and_secrets():
    """.dockerignore keeps the virtualenv, the data folder (keeper.db), .env, git's history
    and the collected static files out of the image."""
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".venv", "data", ".env", ".git", "staticfiles"):
        assert entry in ignored


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a folder to another user")
def test_started_as_root_the_entrypoint_hands_the_data_folder_over_and_drops_root(tmp_path):
    """Started as root (Railway's RAILWAY_RUN_UID=0 on a volume only root may write), the
    entrypoint gives keeper.db's folder and all in it to the service's user, then runs the
    command as that user, none of its groups root's; without such a user it runs the
    command as it is, the folder untouched."""
    data = tmp_path / "data"
    (data / "cache").mkdir(parents=True)
    (data / "keeper.db").write_bytes(b"")
    nobody = pwd.getpwnam("nobody")
    env = dict(os.environ, KEEPER_DB_PATH=str(data / "keeper.db"), KEEPER_RUN_AS="nobody")
    # The system's Python, whose standard library every user may read, as the image's is.
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no python3 in /usr/bin or /bin")
    script = [python, "deploy/entrypoint.py", "sh", "-c", 'id -u; id -G; echo "$HOME"']

    def run(env: dict[str, str]) -> list[str]:
        done = subprocess.run(
            script, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split("\n")

    uid, groups, home, _ = run(env)
    assert int(uid) == nobody.pw_uid and "0" not in groups.split() and home == nobody.pw_dir
    for path in (data, data / "cache", data / "keeper.db"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)

    (data / "later.db").write_bytes(b"")
    uid, *_ = run(dict(env, KEEPER_RUN_AS="no-such-user-here"))
    assert uid == "0" and (data / "later.db").stat().st_uid == 0


def test_the_start_command_migrates_serves_and_stops_within_10_s_of_sigterm(tmp_path):
    """The container's start command on an empty data folder, without BOT_TOKEN: keeper.db
    is created with every migration applied and the superuser from DJANGO_SUPERUSER_*, the
    web server listens on 0.0.0.0:PORT and answers /health (so does the HEALTHCHECK), the
    worker runs, the bot is said to be off; SIGTERM to the first process stops the whole tree
    within 10 s, exit code 0, and the HEALTHCHECK then fails."""
    env = _container_env(
        tmp_path, DJANGO_SUPERUSER_USERNAME="ops", DJANGO_SUPERUSER_PASSWORD="Keeper-ops-2024!"
    )
    port = int(env["PORT"])
    log = tmp_path / "container.log"
    service = _start(START, env, log)
    with cleanup(service):
        wait_until(
            lambda: _serving(port), timeout=120, what=lambda: f"never served:\n{log.read_text()}"
        )
        assert _healthcheck(env) == 0
        sessions = _children_sessions(service)
        assert len(sessions) == 2, processes()
        code, seconds = _sigterm_stop(service, sessions | {service.pid})
    print(f"\nSIGTERM -> web and worker gone in {seconds:.2f} s")
    output = log.read_text(errors="replace")
    assert code == 0, output
    assert seconds < STOP_LIMIT_SECONDS
    assert f"web on http://0.0.0.0:{port}/" in output
    assert "bot off (BOT_TOKEN is not set)" in output and "Traceback" not in output
    assert _healthcheck(env) != 0
    assert run_manage("migrate", "--check", env=env).returncode == 0
    with sqlite3.connect(env["KEEPER_DB_PATH"]) as db:
        assert db.execute("SELECT COUNT(*) FROM sync_queue").fetchone() == (0,)
        admins = db.execute("SELECT username FROM auth_user WHERE is_superuser").fetchall()
    assert admins == [("ops",)]


def test_with_bot_token_one_process_runs_the_bot_too_and_stops_it_within_10_s(tmp_path):
    """With BOT_TOKEN the same start command runs the bot as a third child: it connects to
    (a fake) Discord, /health reports it online beside the worker; SIGTERM closes its gateway
    connection and stops all three within 10 s, the bot saying it stopped."""
    with FakeDiscord() as fake:
        env = _container_env(
            tmp_path,
            BOT_TOKEN=fake.token,
            GUILD_ID=fake.GUILD_ID,
            DISCORD_API_BASE=fake.api_base,
            DISCORD_GATEWAY_URL=fake.gateway_url,
        )
        port = int(env["PORT"])
        log = tmp_path / "container.log"
        service = _start(START, env, log)
        with cleanup(service):
            fake.wait_ready(timeout=120)
            wait_until(
                lambda: (body := _serving(port)) and body["bot_online"],
                timeout=120,
                what=lambda: f"the bot never reported online:\n{log.read_text()}",
            )
            sessions = _children_sessions(service)
            assert len(sessions) == 3, processes()
            code, seconds = _sigterm_stop(service, sessions | {service.pid})
        fake.wait_disconnected(timeout=10)
    print(f"\nSIGTERM -> web, worker and bot gone in {seconds:.2f} s")
    output = log.read_text(errors="replace")
    assert code == 0, output
    assert seconds < STOP_LIMIT_SECONDS
    assert "bot The Keeper" in output and "The Keeper stopped." in output


def test_a_port_that_is_taken_or_not_a_number_stops_the_start_naming_port(tmp_path):
    """PORT that another program holds, or that is not a port number, stops runservice before
    it migrates or starts anything, in one line naming PORT."""
    env = _container_env(tmp_path)
    with socket.socket() as other:
        other.bind(("127.0.0.1", int(env["PORT"])))
        other.listen()
        taken = run_manage(*START[4:], env=env)
    wrong = run_manage(*START[4:], env=dict(env, PORT="80a"))
    assert taken.returncode == 1 and "set PORT to another" in taken.stderr
    assert f"cannot listen on 0.0.0.0:{env['PORT']}" in taken.stderr
    assert wrong.returncode == 1 and "PORT='80a' is not valid" in wrong.stderr
    assert not Path(env["KEEPER_DB_PATH"]).exists()


def test_the_bot_alone_without_bot_token_stops_at_once_naming_it(tmp_path):
    """The Procfile's bot line without BOT_TOKEN exits 2 at once, naming it, before it
    migrates anything."""
    env = _container_env(tmp_path)
    done = run_manage(*_procfile()["bot"][2:], env=env)
    assert done.returncode == 2 and "BOT_TOKEN is not set" in done.stderr
    assert not Path(env["KEEPER_DB_PATH"]).exists()


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def postgres_and_redis() -> Iterator[dict[str, str]]:
    """``DATABASE_URL`` (a new PostgreSQL database on KEEPER_TEST_POSTGRES, dropped
    afterwards), ``Q_REDIS_URL`` and a ``Q_CLUSTER_NAME`` of this test's own (its keys on the
    Redis server deleted afterwards). Skips when either server does not answer, except under
    CI, which starts both (.ci/run), where that fails."""
    import psycopg
    import redis

    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
        client = redis.from_url(REDIS, socket_connect_timeout=3)
        client.ping()
    except (psycopg.OperationalError, redis.exceptions.ConnectionError) as exc:
        if _under_ci():
            raise
        pytest.skip(f"PostgreSQL at {POSTGRES} or Redis at {REDIS} does not answer: {exc}")
    database = f"keeper_container_{uuid.uuid4().hex[:12]}"
    cluster = f"keeper-container-{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{database}"')
        try:
            yield {
                "DATABASE_URL": POSTGRES.rsplit("/", 1)[0] + f"/{database}",
                "Q_REDIS_URL": REDIS,
                "Q_CLUSTER_NAME": cluster,
            }
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            keys = list(client.scan_iter(match=f"django_q:{cluster}:*"))
            if keys:
                client.delete(*keys)


def test_split_mode_runs_web_and_worker_apart_on_postgresql_and_redis(tmp_path, postgres_and_redis):
    """The Procfile's web and worker lines as two services started at once, each with its
    own data folder (no volume shared), keeper on PostgreSQL and the broker on Redis: both
    migrate without tripping on each other, the web answers /health on PORT and sees the
    worker running through Redis; SIGTERM stops each within 10 s."""
    procfile = _procfile()
    # One SECRET_KEY for both, as every service of a deployment needs: django-q2 signs the
    # worker's status with it, and the web server reads only what it can verify.
    shared = dict(postgres_and_redis, SECRET_KEY=_secret_key())
    web_env = _container_env(tmp_path / "web", **shared)
    worker_env = _container_env(tmp_path / "worker", **shared)
    port = int(web_env["PORT"])
    web = _start(procfile["web"], web_env, tmp_path / "web.log")
    worker = _start(procfile["worker"], worker_env, tmp_path / "worker.log")
    with cleanup(web, worker):
        body = wait_until(
            lambda: _serving(port),
            timeout=120,
            what=lambda: "\n".join(
                (tmp_path / name).read_text() for name in ("web.log", "worker.log")
            ),
        )
        trees = {s: _children_sessions(s) | {s.pid} for s in (web, worker)}
        assert [len(tree) for tree in trees.values()] == [2, 2], processes()
        stops = {s: _sigterm_stop(s, tree) for s, tree in trees.items()}
    logs = [(tmp_path / name).read_text(errors="replace") for name in ("web.log", "worker.log")]
    print(
        "\nSIGTERM -> "
        + ", ".join(f"{s.args[-1]} gone in {t:.2f} s" for s, (_, t) in stops.items())
    )
    assert body["database"] == "ok"
    assert [code for code, _ in stops.values()] == [0, 0], logs
    assert all(seconds < STOP_LIMIT_SECONDS for _, seconds in stops.values())
    assert "(web only)" in logs[0] and "(worker only)" in logs[1]
    assert not any("Traceback" in text for text in logs), logs
