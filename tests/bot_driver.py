"""The bot driver of the end-to-end tests: start ``manage.py runbot`` in its own process against
a :class:`~tests.fake_discord.FakeDiscord`, on its own keeper.db, VH file and cache, wait until
the fake saw it identify, read its keeper.db, stop it; and drive it as a member would, filling
in /discovery-report step by step (:class:`Form`, :func:`report`)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from discoveries.haven.files import haven_file_create
from discoveries.types import DiscoveryType
from tests.conftest import ROOT, manage_env, run_manage
from tests.fake_discord import FakeDiscord, Interaction, RestCall, find_component, is_ephemeral

#: discord.py registers a form's new components when Discord's answer to the edit arrives; a
#: member's next click comes later than that. The fake records the edit as it receives it, so
#: the tests give the bot this long to read the answer before they click again.
SETTLE_SECONDS = 0.1


@dataclass
class BotRun:
    """One ``manage.py runbot`` process against ``fake``, on its own keeper.db and cache."""

    fake: FakeDiscord
    proc: subprocess.Popen
    env: dict[str, str]
    keeper: Path
    haven: Path
    cache_dir: Path
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def keeper_rows(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(self.keeper, timeout=30) as db:
            return db.execute(sql, params).fetchall()


def bot_env(fake: FakeDiscord, folder: Path, haven: Path, **extra: str) -> dict[str, str]:
    settings = {
        "BOT_TOKEN": fake.token,
        "GUILD_ID": fake.GUILD_ID,
        "ARCHIVE_CHANNEL_ID": fake.ARCHIVE_CHANNEL_ID,
        "DISCORD_API_BASE": fake.api_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "CACHE_URL": f"filecache://{folder / 'cache'}",
    }
    return manage_env(keeper=folder / "keeper.db", haven=haven, **{**settings, **extra})


def runbot_spawn(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    """Start ``manage.py runbot args`` with ``env`` in its own process group, its output (both
    streams) going to ``log``; returns at once, without waiting for Discord."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "runbot", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def bot_start(fake: FakeDiscord, folder: Path, *args: str, **extra: str) -> BotRun:
    """Migrate a keeper.db under ``folder``, make a demo VH there unless one exists, start
    ``runbot`` and wait until the fake saw it identify."""
    folder.mkdir(parents=True, exist_ok=True)
    haven = folder / "VH-Database.db"
    if not haven.exists():
        haven_file_create(haven, with_demo_data=True)
    env = bot_env(fake, folder, haven, **extra)
    migrated = run_manage("migrate", "--no-input", env=env)
    assert migrated.returncode == 0, migrated.stderr
    log = folder / "runbot.log"
    proc = runbot_spawn(env, log, *args)
    run = BotRun(fake, proc, env, folder / "keeper.db", haven, folder / "cache", log)
    try:
        fake.wait_ready(timeout=30)
    except AssertionError:
        run.stop(signal.SIGKILL)
        raise AssertionError(f"the bot never became ready:\n{run.output()}") from None
    return run


class Form:
    """A member filling in /discovery-report through the fake, step by step; every answer is
    checked to be accepted (200) and, for the form, ephemeral."""

    def __init__(self, fake: FakeDiscord, *, permissions: int = 0):
        self.fake = fake
        self.permissions = permissions
        self.origin = fake.slash("discovery-report", permissions=permissions)
        self.accepted(self.origin)
        self.message_id = fake.message_of(self.origin)["id"]
        assert is_ephemeral(self.message)
        self.last: Interaction = self.origin

    @property
    def message(self) -> dict:
        return self.fake.messages[self.message_id]

    def accepted(self, interaction: Interaction) -> RestCall:
        """Wait until the bot acknowledged ``interaction`` (200) and, when it deferred an
        update of the form (type 6), until it edited the form."""
        call = self.fake.wait_response(interaction, timeout=10)
        assert call.status == 200, (call.path, call.status, call.response)
        if call.json.get("type") == 6:
            edit = self.fake.wait_response(interaction, kind="edit", timeout=15)
            assert edit.status == 200, (edit.path, edit.status, edit.response)
        time.sleep(SETTLE_SECONDS)
        self.last = interaction
        return call

    def select(self, custom_id: str, value: str) -> Interaction:
        interaction = self.fake.select(
            self.message, custom_id, [value], permissions=self.permissions
        )
        self.accepted(interaction)
        return interaction

    def button(self, custom_id: str) -> Interaction:
        interaction = self.fake.button(self.message, custom_id, permissions=self.permissions)
        self.accepted(interaction)
        return interaction

    def option(self, custom_id: str, label: str, *, pager: str) -> str:
        """The value of the option labelled ``label``, turning pages with the pager."""
        for _ in range(50):
            select = find_component(self.message, custom_id=custom_id)
            for option in select["options"]:
                if option["label"] == label:
                    return option["value"]
            self.button(f"report:{pager}:page:next")
        raise AssertionError(f"no option {label!r} on any page")

    def choose_type(self, dtype: DiscoveryType) -> None:
        self.select("report:type", dtype.slug)

    def choose_system(self, name: str) -> None:
        self.select("report:system", self.option("report:system", name, pager="system"))

    def choose_place(self, label: str) -> None:
        self.select("report:place", self.option("report:place", label, pager="place"))

    def modal(self, opener_custom_id: str, values: dict[str, str], **kw) -> Interaction:
        opener = self.button(opener_custom_id)
        modal = self.fake.modal_of(opener)
        submitted = self.fake.submit_modal(
            modal["custom_id"], values, permissions=self.permissions, **kw
        )
        self.accepted(submitted)
        return submitted

    def describe(self, values: dict[str, str], **kw) -> Interaction:
        return self.modal("report:describe", values, **kw)

    def submit(self, evidence: str | None = None) -> Interaction:
        if evidence is None:
            return self.button("report:submit")
        return self.modal("report:evidence", {"evidence_url": evidence})

    def confirmation(self, interaction: Interaction, *, timeout: float = 10) -> tuple[int, dict]:
        """The discovery number of the confirmation ``interaction`` got, and its body."""
        call = self.fake.wait_response(interaction, kind="followup", timeout=timeout)
        assert call.status == 200, call.response
        content = call.json["content"]
        found = re.search(r"Discovery \*\*#(\d+)\*\* archived", content)
        assert found, content
        assert call.json["flags"] & 64, "the confirmation must be ephemeral"
        return int(found.group(1)), call.json


def values_for(dtype: DiscoveryType, description: str) -> dict[str, str]:
    return {"description": description, **{f.key: f"{f.label} value" for f in dtype.fields}}


def report(fake: FakeDiscord, dtype: DiscoveryType, system: str, place: str, **kw) -> int:
    form = Form(fake)
    form.choose_type(dtype)
    form.choose_system(system)
    form.choose_place(place)
    form.describe(values_for(dtype, kw.pop("description", f"A {dtype.name} find")))
    number, _ = form.confirmation(form.submit(**kw))
    return number
