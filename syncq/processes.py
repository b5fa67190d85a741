"""Child processes of the service commands (``runservice``, ``runbot --with-worker``).

Each child runs in its own session, so a Ctrl-C or a SIGTERM sent to the service's process
group reaches only the service, which then stops each child through its main process:
django-q2's cluster does not stop when SIGTERM reaches all of its processes at once (as
systemd's default KillMode does), but stops cleanly when only its main process gets it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from django.conf import settings


def children_start(
    commands: dict[str, list[str]], *, env: dict[str, str] | None = None
) -> dict[str, subprocess.Popen]:
    """Start each ``{name: argv}`` in the project folder, in its own session, with ``env``
    (default: this process's environment); returns ``{name: Popen}``."""
    return {
        name: subprocess.Popen(
            argv,
            env=dict(os.environ) if env is None else env,
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )
        for name, argv in commands.items()
    }


def children_stop(children: dict[str, subprocess.Popen], *, grace_seconds: float) -> None:
    """SIGTERM each running child's main process, wait up to ``grace_seconds`` in all, then
    kill the process group of any still running."""
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
