"""``manage.py agent_token NAME``: the token of a Control Room agent (README, "Deploying to
the cloud")."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from syncq.models import HavenAgent

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def agent_token_issue(name: str, *, rotate: bool = False) -> tuple[str, bool]:
    """The token of agent ``name`` (letters, digits, ``-`` and ``_``, 1 to 64): a user
    ``agent:<name>`` that holds only ``syncq.haven_agent`` (no staff, no admin, no other part of
    the API), made with its :class:`~syncq.models.HavenAgent` row on first use. ``rotate``
    replaces an existing token (the old one stops working at once). Returns ``(key, created)``,
    ``created`` false when an existing token was returned as is. Raises ``ValueError`` for a
    bad name, or a name whose user exists and is not an agent."""
    if not NAME.fullmatch(name):
        raise ValueError("an agent's name is 1 to 64 letters, digits, '-' or '_'")
    users = get_user_model()._default_manager
    with transaction.atomic():
        user, made = users.get_or_create(username=f"agent:{name}")
        if made:
            user.set_unusable_password()
            user.save()
        elif user.is_staff or user.is_superuser:
            raise ValueError(f"user agent:{name} is staff: not an agent's")
        user.user_permissions.set(
            [Permission.objects.get_by_natural_key("haven_agent", "syncq", "havenagent")]
        )
        HavenAgent.objects.get_or_create(name=name)
        existing = Token.objects.filter(user=user).first()
        if existing and not rotate:
            return existing.key, False
        if existing:
            existing.delete()
        return Token.objects.create(user=user).key, True


class Command(BaseCommand):
    help = "Create (or show, or with --rotate replace) the token of a Control Room agent."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The agent's name, e.g. desktop.")
        parser.add_argument(
            "--rotate", action="store_true", help="Replace the token; the old one stops working."
        )

    def handle(self, *args, name, rotate=False, **options):
        try:
            key, created = agent_token_issue(name, rotate=rotate)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(key)
        self.stderr.write(
            f"{'new' if created else 'existing'} token of agent {name}: put it in the "
            "desktop's .env as AGENT_TOKEN (it can only run the Control Room agent)"
        )
