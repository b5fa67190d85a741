"""``python -m chaos [--full] [--only NAME …] [--jobs N]``: run the fault scenarios, print one
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
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the issue's full sizes")
    parser.add_argument("--only", action="append", help="run only these scenarios")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run up to N scenarios at once, each in its own workspace (default 1; "
        "their drain times then include waiting for the CPU)",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keeper_site.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(32))
    os.environ["KEEPER_ENV_FILE"] = ""
    import django

    django.setup()
    from chaos.harness import Outcome, Workspace, outcome_table
    from chaos.scenarios import SCENARIOS

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
        workspaces[name] = Workspace(base / name)
        try:
            outcome = SCENARIOS[name](workspaces[name], full=args.full)
        except Exception as exc:
            traceback.print_exc()
            outcome = Outcome(name=name, items=0)
            outcome.violations.append(f"the scenario failed: {type(exc).__name__}: {exc}")
        finally:
            workspaces[name].close()
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
