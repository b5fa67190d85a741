"""``python -m chaos [--full] [--only NAME]… [--jobs N]``: run the fault scenarios, print one
table row per scenario, and exit 1 when any item was lost, duplicated or left stuck."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keeper_site.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["KEEPER_ENV_FILE"] = ""
    import django

    django.setup()
    from chaos.harness import POSTGRES_ADMIN_URL, REDIS_URL, Outcome, Workspace, outcome_table
    from chaos.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description=__doc__,
        epilog=(
            f"The scale-out scenario creates a database keeper_chaos_* on CHAOS_POSTGRES_URL "
            f"(now {POSTGRES_ADMIN_URL}) and queues its tasks under a name of its own on the "
            f"Redis database CHAOS_REDIS_URL (now {REDIS_URL}); when one cannot be reached "
            "it is skipped, or fails when CI is set (to anything but empty, 0, false or no). "
            "The agent-link scenario needs network namespaces (root and iproute2's ip): "
            "without them it is skipped, or fails under CI. "
            f"Workspaces are made under {Path(tempfile.gettempdir()) / 'keeper-chaos-*'}."
        ),
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="full sizes (5,000 items and 20 kills, 10,000 submissions…) instead of the short ones",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this scenario; repeat for several ({', '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the workspaces, and scale-out's PostgreSQL database, for a look afterwards",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run up to N scenarios at once, each in its own workspace (default 1; make chaos "
        "uses 4 for the short sizes); drain times then include waiting for the CPU",
    )
    args = parser.parse_args(argv)

    chosen = args.only or list(SCENARIOS)
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; there are {sorted(SCENARIOS)}")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    base = Path(tempfile.mkdtemp(prefix="keeper-chaos-"))
    workspaces: dict[str, Workspace] = {}

    def run(name: str) -> Outcome:
        began = time.monotonic()
        # Created when the scenario starts: its figures count from then.
        workspaces[name] = Workspace(base / name, keep=args.keep)
        try:
            outcome = SCENARIOS[name](workspaces[name], full=args.full)
        except Exception as exc:
            traceback.print_exc()
            outcome = Outcome(name=name, items=0)
            outcome.violations.append(f"the scenario failed: {type(exc).__name__}: {exc}")
        finally:
            workspaces[name].close()
        outcome.key = name
        print(f"{outcome.name}: done in {time.monotonic() - began:.0f} s", flush=True)
        return outcome

    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        outcomes = list(pool.map(run, chosen))
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        for workspace in list(workspaces.values()):
            workspace.close()
        print(f"interrupted; workspaces left in {base}", file=sys.stderr, flush=True)
        # The scenarios' threads would go on waiting for queues that no longer drain.
        os._exit(130)
    pool.shutdown()
    print(outcome_table(outcomes))
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"workspaces kept in {base}")
    return 0 if all(o.clean for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
