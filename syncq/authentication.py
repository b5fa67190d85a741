"""Brute-force protection for the two ways in: the admin's login form and the API's tokens.

Both are counted by django-axes (``AccessAttempt`` rows in keeper.db, shown in the admin under
"Axes", lifted by ``manage.py axes_reset``, ``axes_reset_ip`` and ``axes_reset_username``), by
the combination of user name and client address:

- an admin sign-in is refused for ``LOGIN_FAILURE_LIMIT`` failures of one user from one address
  (``AXES_FAILURE_LIMIT``), until ``LOGIN_COOLOFF_MINUTES`` (``AXES_COOLOFF_MINUTES``) pass
  without another failure, even with the right password;
- API token failures have no user name, so they are recorded under :data:`API_ATTEMPTS_USERNAME`:
  after ``API_AUTH_FAILURE_LIMIT`` of them from one address, that address gets 429 (JSON,
  ``Retry-After``) for every token, valid or not, until ``API_AUTH_COOLOFF_SECONDS`` pass
  without another failure.

django-axes reads the limit and the cool-off through :func:`failure_limit` and
:func:`cool_off`, which tell the two apart by the mark :class:`LockoutTokenAuthentication`
leaves on the request, and the client address through :func:`client_ip`
(``TRUSTED_PROXY_COUNT``). README, "Running on the internet".
"""

from __future__ import annotations

import ipaddress
import math
from datetime import timedelta

from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.signals import user_login_failed
from django.db.models import Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled

#: The user name API token failures are recorded under. Django's user names cannot hold
#: parentheses or spaces, so no account shares its count.
API_ATTEMPTS_USERNAME = "(API token)"
#: What a refused address is told, in the API's ``{"detail": …}`` (DRF adds the wait).
API_LOCKOUT_DETAIL = "Too many failed token attempts from this address."
#: The attribute :class:`LockoutTokenAuthentication` sets on the Django request.
_API_ATTEMPT_MARK = "keeper_token_attempt"


def _is_token_attempt(request: HttpRequest | None) -> bool:
    return bool(getattr(request, _API_ATTEMPT_MARK, False))


def client_ip(request: HttpRequest) -> str | None:
    """The client's address (django-axes' ``AXES_CLIENT_IP_CALLABLE``).

    With ``TRUSTED_PROXY_COUNT`` = 0 (the default) it is the connection's address,
    ``REMOTE_ADDR``, and ``X-Forwarded-For`` is ignored: anyone can send that header. With
    *n* proxies in front, each appending the address it received the request from, it is
    the *n*-th entry of ``X-Forwarded-For`` from the right (what the last proxy saw; entries
    further left may be made up by the client). A header with fewer entries, or an entry that
    is not an IP address, gives ``REMOTE_ADDR``. Either is then folded by
    :func:`client_network` (IPv6 by its /64).
    """
    remote = request.META.get("REMOTE_ADDR") or None
    count = settings.TRUSTED_PROXY_COUNT
    if not count:
        return client_network(remote)
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(hops) < count:
        return client_network(remote)
    try:
        ipaddress.ip_address(hops[-count])
    except ValueError:
        return client_network(remote)
    return client_network(hops[-count])


#: The IPv6 prefix one subscriber holds: a home or a server gets at least a /64, so counting
#: addresses apart would give one attacker 2**64 fresh addresses to guess from.
IPV6_CLIENT_PREFIX = 64


def client_network(address: str | None) -> str | None:
    """The address lockouts count ``address`` under: an IPv4 address as it is (one written
    inside IPv6, ``::ffff:198.51.100.5``, as that IPv4 address); an IPv6 address as the first
    address of its /:data:`IPV6_CLIENT_PREFIX` network (``2001:db8:1:2::``), so every address
    of one subscriber's block shares one count. Text that is no address is returned as is."""
    try:
        parsed = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        network = ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False)
        return str(network.network_address)
    return str(parsed)


def failure_limit(request: HttpRequest | None, credentials: dict | None = None) -> int:
    """Failures before a lockout (django-axes' ``AXES_FAILURE_LIMIT``): the API's for token
    attempts, the admin login's otherwise."""
    if _is_token_attempt(request):
        return settings.API_AUTH_FAILURE_LIMIT
    return settings.LOGIN_FAILURE_LIMIT


def cool_off(request: HttpRequest | None) -> timedelta:
    """How long after its last failure a lockout lasts (django-axes' ``AXES_COOLOFF_TIME``):
    the API's for token attempts, the admin login's otherwise."""
    if _is_token_attempt(request):
        return timedelta(seconds=settings.API_AUTH_COOLOFF_SECONDS)
    return timedelta(minutes=settings.LOGIN_COOLOFF_MINUTES)


def _seconds_left(request: HttpRequest, username: str) -> int:
    """Whole seconds until the lockout of ``username`` at this request's address lifts: the
    cool-off counted from the last failure (at least 1)."""
    last = AccessAttempt.objects.filter(
        username=username, ip_address=request.axes_ip_address
    ).aggregate(last=Max("attempt_time"))["last"]
    if last is None:
        return math.ceil(cool_off(request).total_seconds())
    left = (last + cool_off(request) - timezone.now()).total_seconds()
    return max(1, math.ceil(left))


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """The answer to a locked-out attempt (django-axes' ``AXES_LOCKOUT_CALLABLE``), 429 with
    ``Retry-After``: for the admin login, a page in the admin's look saying how long to wait
    and how an operator lifts it; for an API token, ``{"detail": …}`` as DRF's throttles
    answer (:class:`LockoutTokenAuthentication` normally answers those itself)."""
    username = (credentials or {}).get("username") or ""
    wait = _seconds_left(request, username)
    if _is_token_attempt(request):
        response = JsonResponse(
            {"detail": f"{API_LOCKOUT_DETAIL} Expected available in {wait} seconds."},
            status=429,
        )
    else:
        context = {
            **admin.site.each_context(request),
            "title": "Sign-in locked",
            "username": username,
            "minutes": math.ceil(wait / 60),
            "failure_limit": failure_limit(request, credentials),
        }
        response = render(request, "admin/keeper_lockout.html", context, status=429)
    response["Retry-After"] = str(wait)
    return response


class LockoutTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, counted by django-axes per client address.

    A request that carries no ``Authorization: Token …`` header is not a token attempt and
    is left to the next authentication class. A token attempt from an address that is locked
    out is refused with 429 and ``Retry-After`` (DRF's ``Throttled``), valid token or not. A
    refused token (unknown, malformed, inactive user) is recorded as a failed login of
    :data:`API_ATTEMPTS_USERNAME` from that address (Django's ``user_login_failed`` signal, which
    django-axes handles) and answered 401, or 429 when it was the one that reached the limit.
    """

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() != self.keyword.lower().encode():
            return None
        django_request = request._request
        setattr(django_request, _API_ATTEMPT_MARK, True)
        credentials = {"username": API_ATTEMPTS_USERNAME}
        if not AxesProxyHandler.is_allowed(django_request, credentials):
            raise Throttled(
                wait=_seconds_left(django_request, API_ATTEMPTS_USERNAME), detail=API_LOCKOUT_DETAIL
            )
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            user_login_failed.send(sender=__name__, credentials=credentials, request=django_request)
            if getattr(django_request, "axes_locked_out", False):
                # Answered here, in the API's terms, rather than by AxesMiddleware's page.
                django_request.axes_locked_out = False
                raise Throttled(
                    wait=cool_off(django_request).total_seconds(), detail=API_LOCKOUT_DETAIL
                ) from None
            raise
