"""The container's entrypoint: ``python deploy/entrypoint.py COMMAND…`` runs ``COMMAND`` (the
image's CMD, or the start command a platform sets) in this process's place, as the user keeper.

Started as keeper, the image's ``USER``, it runs the command as it is. Started as root, as
Railway does with ``RAILWAY_RUN_UID=0`` because it mounts volumes that only root may write, it
first hands keeper.db's folder (the volume: the folder of ``KEEPER_DB_PATH``, everything in it
included) to keeper, then drops to keeper's user and groups: the service never runs as root.
Outside the image, where there is no such user, it runs the command as it is. ``KEEPER_RUN_AS``
names another user than keeper.

Only the standard library: it runs before anything else, in the image's Python.
"""

from __future__ import annotations

import os
import pwd
import sys

DEFAULT_USER = "keeper"
DEFAULT_DB_PATH = "/app/data/keeper.db"


def folder_hand_over(folder: str, *, uid: int, gid: int) -> None:
    """Make ``folder`` (created if missing) and everything under it belong to ``uid:gid``,
    symbolic links themselves rather than what they point to. Raises ``OSError`` as
    ``os.chown`` does."""
    os.makedirs(folder, exist_ok=True)
    os.chown(folder, uid, gid)
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def user_become(entry: pwd.struct_passwd) -> None:
    """Drop from root to the user ``entry`` (its group and supplementary groups too, groups
    first, while root may still change them) and point ``HOME`` at its home. Raises
    ``PermissionError`` when this process is not root."""
    os.setgroups(os.getgrouplist(entry.pw_name, entry.pw_gid))
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir


def main(argv: list[str]) -> None:
    """Run ``argv`` (a command and its arguments) in this process's place, as described in
    the module's docstring; exits with status 2 and a line on stderr when ``argv`` is empty."""
    if not argv:
        sys.stderr.write("usage: python deploy/entrypoint.py COMMAND [ARGUMENT…]\n")
        raise SystemExit(2)
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam(os.environ.get("KEEPER_RUN_AS") or DEFAULT_USER)
        except KeyError:
            entry = None
        if entry is not None:
            data = os.path.dirname(os.environ.get("KEEPER_DB_PATH") or DEFAULT_DB_PATH)
            folder_hand_over(data, uid=entry.pw_uid, gid=entry.pw_gid)
            user_become(entry)
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # noqa: S606 (the command is the operator's own)


if __name__ == "__main__":
    main(sys.argv[1:])
