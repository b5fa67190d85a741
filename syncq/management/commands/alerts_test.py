"""``manage.py alerts_test``: post one test message to ``ALERT_WEBHOOK_URL`` now."""

import json

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from syncq.alert_services import alert_check_send


class Command(BaseCommand):
    help = (
        "Post one test message to ALERT_WEBHOOK_URL at once, to check the URL; prints "
        "Discord's answer. With --show, print the JSON body posted as well."
    )

    def add_arguments(self, parser):
        parser.add_argument("--show", action="store_true", help="print the body posted")

    def handle(self, *args, show, **options):
        if not settings.ALERT_WEBHOOK_URL:
            raise CommandError("ALERT_WEBHOOK_URL is not set: alerts are off")
        try:
            response, body = alert_check_send()
        except httpx.HTTPError as exc:
            raise CommandError(f"no answer from the webhook: {type(exc).__name__}: {exc}") from exc
        if show:
            self.stdout.write(json.dumps(body, ensure_ascii=False, indent=2))
        if not response.is_success:
            raise CommandError(
                f"the webhook answered HTTP {response.status_code}: {response.text[:500]}"
            )
        self.stdout.write(f"posted: the webhook answered HTTP {response.status_code}")
