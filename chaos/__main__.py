"""``python -m chaos [--full] [--only NAME …]``: run the fault scenarios, print one table row
per scenario, and exit 1 when any item was lost, duplicated or left stuck."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the issue's full sizes")
    parser.add_argument("--only", action="append", help="run only these scenarios")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keeper_site.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(32))
    os.environ["KEEPER_ENV_FILE"] = ""
    import django

    django.setup()
    from chaos.harness import Workspace, outcome_table
    from chaos.scenarios import SCENARIOS

    chosen = args.only or list(SCENARIOS)
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; there are {sorted(SCENARIOS)}")
    base = Path(tempfile.mkdtemp(prefix="keeper-chaos-"))
    outcomes = []
    for name in chosen:
        began = time.monotonic()
        workspace = Workspace(base / name)
        try:
            outcome = SCENARIOS[name](workspace, full=args.full)
        finally:
            workspace.stop_all()
        outcomes.append(outcome)
        print(f"{outcome.name}: done in {time.monotonic() - began:.0f} s", flush=True)
    print(outcome_table(outcomes))
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"workspaces kept in {base}")
    return 0 if all(o.clean for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
