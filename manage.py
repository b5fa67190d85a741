#!/usr/bin/env python
"""Django's command-line utility for Keeper Sync."""

import os
import sys


def main() -> None:
    # The Control Room agent runs on a desktop with VH-Database.db and nothing of the server's.
    agent = len(sys.argv) > 1 and sys.argv[1] == "haven_agent"
    os.environ.setdefault(
        "DJANGO_SETTINGS_MODULE", "keeper_site.agent_settings" if agent else "keeper_site.settings"
    )
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        # Load the settings first: Django's command line would otherwise keep their error to
        # itself and run the command unconfigured ("Models aren't loaded yet").
        settings.INSTALLED_APPS  # noqa: B018
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A setting that is missing or wrong: say which, without a traceback.
        sys.stderr.write(f"Keeper Sync cannot start: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
