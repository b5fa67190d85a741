"""On the internet: brute-force lockouts of the admin login and of API tokens (django-axes),
the client address behind proxies, the admin login behind a TLS proxy, the content security
policy's header, and where a login lands."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.core.management import call_command
from django.shortcuts import resolve_url
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from syncq.authentication import API_ATTEMPTS_USERNAME
from tests.factories import PASSWORD, user_make

LOGIN = "/admin/login/"
STATUS = "/sync/status"
BAD_TOKEN = "Token " + "0" * 40

pytestmark = pytest.mark.django_db


def sign_in(client: Client, password: str, username: str = "ops", **extra):
    """POST the admin login form as ``username``."""
    return client.post(LOGIN, {"username": username, "password": password}, **extra)


def signed_in(response) -> bool:
    """Whether the login answered with the redirect a successful sign-in gives."""
    return response.status_code == 302 and response["Location"] == "/admin/"


@pytest.fixture
def ops():
    """A superuser named ops, whose password is the factories' PASSWORD."""
    return user_make("ops", superuser=True)


def lock_out(client: Client, username: str = "ops", times: int = 5, **extra) -> None:
    """Fail ``times`` sign-ins of ``username``; the last one is answered by the lockout."""
    for n in range(times):
        response = sign_in(client, f"wrong-{n}", username, **extra)
        assert response.status_code == (429 if n == times - 1 else 200), n


# --- the admin login ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reset",
    [("axes_reset",), ("axes_reset_username", "ops"), ("axes_reset_ip", "127.0.0.1")],
    ids=["all", "username", "ip"],
)
def test_five_wrong_passwords_lock_the_login_until_an_operator_resets_it(client, ops, reset):
    """After 5 wrong passwords the right one is refused with the lockout page (429,
    Retry-After 15 minutes); axes_reset, axes_reset_username or axes_reset_ip lifts it."""
    lock_out(client)
    refused = sign_in(client, PASSWORD)
    assert refused.status_code == 429
    assert refused["Retry-After"] == str(15 * 60)
    page = refused.content.decode()
    assert "Too many failed sign-ins for “ops”" in page and "15 minutes" in page
    assert "_auth_user_id" not in client.session

    call_command(*reset)
    assert signed_in(sign_in(client, PASSWORD))


def test_the_lockout_lifts_after_the_cool_off(client, ops):
    """15 minutes after the last failure the right password works again, not before."""
    lock_out(client)
    with time_machine.travel(timezone.now() + timedelta(minutes=14), tick=False):
        assert sign_in(client, PASSWORD).status_code == 429  # a failure: the clock restarts
    with time_machine.travel(timezone.now() + timedelta(minutes=14 + 15, seconds=1), tick=False):
        assert signed_in(sign_in(client, PASSWORD))


def test_the_lockout_is_per_user_and_address(client, ops):
    """A locked user can still sign in from another address, and another user from the
    locked address."""
    user_make("other", superuser=True)
    lock_out(client)
    assert sign_in(client, PASSWORD).status_code == 429
    assert signed_in(sign_in(Client(REMOTE_ADDR="10.0.0.2"), PASSWORD))
    assert signed_in(sign_in(Client(), PASSWORD, "other"))


def test_the_limit_and_cool_off_come_from_the_settings(client, ops, settings):
    """AXES_FAILURE_LIMIT and AXES_COOLOFF_MINUTES (LOGIN_FAILURE_LIMIT and
    LOGIN_COOLOFF_MINUTES in Django's settings) set the lockout."""
    settings.LOGIN_FAILURE_LIMIT = 2
    settings.LOGIN_COOLOFF_MINUTES = 1
    lock_out(client, times=2)
    refused = sign_in(client, PASSWORD)
    assert refused.status_code == 429 and refused["Retry-After"] == "60"


def test_a_successful_sign_in_forgets_earlier_failures(client, ops):
    """Four typos, a successful sign-in, then four more typos: still not locked out."""
    for n in range(4):
        assert sign_in(client, f"typo-{n}").status_code == 200
    assert signed_in(sign_in(client, PASSWORD))
    client.logout()
    for n in range(4):
        assert sign_in(client, f"typo-{n}").status_code == 200
    assert signed_in(sign_in(client, PASSWORD))


def test_lockouts_are_listed_in_the_admin(client, ops):
    """The locked user and address appear under Axes → Access attempts, with the failures."""
    lock_out(client)
    viewer = Client()
    viewer.force_login(user_make("root", superuser=True))
    page = viewer.get("/admin/axes/accessattempt/")
    assert page.status_code == 200
    rows = page.content.decode()
    assert "ops" in rows and "127.0.0.1" in rows
    assert AccessAttempt.objects.get(username="ops").failures_since_start == 5


# --- the client's address behind proxies --------------------------------------------------------


def test_x_forwarded_for_is_ignored_without_trusted_proxies(client, ops):
    """With TRUSTED_PROXY_COUNT=0 (the default) a client cannot escape its lockout by
    sending another X-Forwarded-For."""
    lock_out(client, HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert sign_in(client, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.9").status_code == 429


def test_behind_one_proxy_the_client_is_the_last_forwarded_address(ops, settings):
    """With TRUSTED_PROXY_COUNT=1 the lockout follows the address the proxy appended to
    X-Forwarded-For, not the proxy's own nor what the client put in front of it."""
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = Client(REMOTE_ADDR="10.0.0.1")
    lock_out(proxy, HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7")
    assert sign_in(proxy, PASSWORD, HTTP_X_FORWARDED_FOR="5.6.7.8, 203.0.113.7").status_code == 429
    assert signed_in(sign_in(proxy, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.8"))
    assert AccessAttempt.objects.get().ip_address == "203.0.113.7"


def test_an_ipv6_block_and_an_ipv4_written_as_ipv6_count_as_one_address(ops, settings):
    """Every address of one /64 shares one count (a subscriber's block would otherwise give
    an attacker endless fresh addresses), and ::ffff:a.b.c.d counts as a.b.c.d; another /64
    is another address."""
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = Client(REMOTE_ADDR="10.0.0.1")
    for n in range(1, 6):
        sign_in(proxy, "wrong", HTTP_X_FORWARDED_FOR=f"2001:db8:1:2::{n:x}")
    assert sign_in(proxy, PASSWORD, HTTP_X_FORWARDED_FOR="2001:db8:1:2:ffff::9").status_code == 429
    assert AccessAttempt.objects.get().ip_address == "2001:db8:1:2::"
    assert signed_in(sign_in(proxy, PASSWORD, HTTP_X_FORWARDED_FOR="2001:db8:1:3::1"))
    lock_out(proxy, HTTP_X_FORWARDED_FOR="198.51.100.5")
    mapped = sign_in(proxy, PASSWORD, HTTP_X_FORWARDED_FOR="::ffff:198.51.100.5")
    assert mapped.status_code == 429


def test_ipv6_clients_without_a_proxy_are_folded_the_same(ops):
    """A client connecting over IPv6 itself is counted by its /64 too."""
    for n in range(1, 6):
        sign_in(Client(REMOTE_ADDR=f"2001:db8:9:9::{n}"), "wrong")
    assert sign_in(Client(REMOTE_ADDR="2001:db8:9:9::77"), PASSWORD).status_code == 429


# --- API tokens ---------------------------------------------------------------------------------


def api_client(authorization: str, address: str = "127.0.0.1") -> APIClient:
    """An API client from ``address`` sending ``authorization``."""
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


@pytest.fixture
def good_token() -> str:
    """The Authorization header of a user who may read the queue."""
    user = user_make("viewer", perms=["syncq.view_syncqueueitem"])
    return f"Token {Token.objects.create(user=user).key}"


def test_twenty_bad_tokens_from_one_address_shut_it_out_even_with_a_good_token(good_token):
    """19 bad tokens answer 401, the 20th and then any token from that address 429 in JSON
    with Retry-After; another address is not affected; axes_reset lifts it."""
    bad = api_client(BAD_TOKEN)
    assert [bad.get(STATUS).status_code for _ in range(19)] == [401] * 19
    assert bad.get(STATUS).status_code == 429

    refused = api_client(good_token).get(STATUS)
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    assert refused.json()["detail"].startswith("Too many failed token attempts")
    assert 290 <= int(refused["Retry-After"]) <= 300

    assert api_client(good_token, "10.0.0.9").get(STATUS).status_code == 200
    call_command("axes_reset")
    assert api_client(good_token).get(STATUS).status_code == 200


def test_the_api_lockout_lifts_after_its_cool_off(good_token, settings):
    """API_AUTH_FAILURE_LIMIT and API_AUTH_COOLOFF_SECONDS set it: after 3 failures the
    address waits 60 s from the last one."""
    settings.API_AUTH_FAILURE_LIMIT = 3
    settings.API_AUTH_COOLOFF_SECONDS = 60
    bad = api_client(BAD_TOKEN)
    assert [bad.get(STATUS).status_code for _ in range(3)] == [401, 401, 429]
    with time_machine.travel(timezone.now() + timedelta(seconds=50), tick=False):
        refused = api_client(good_token).get(STATUS)
        assert refused.status_code == 429 and 9 <= int(refused["Retry-After"]) <= 11
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        assert api_client(good_token).get(STATUS).status_code == 200


def test_api_failures_and_admin_failures_are_counted_apart(client, ops, good_token):
    """Bad tokens do not lock the admin login of that address, nor wrong passwords the API;
    token failures are listed in the admin as the user "(API token)"."""
    bad = api_client(BAD_TOKEN)
    for _ in range(10):
        bad.get(STATUS)
    lock_out(client)
    assert api_client(good_token).get(STATUS).status_code == 200
    assert set(AccessAttempt.objects.values_list("username", "failures_since_start")) == {
        (API_ATTEMPTS_USERNAME, 10),
        ("ops", 5),
    }


def test_requests_without_a_token_are_not_counted(good_token):
    """Anonymous requests are 401 as before and never lock anyone out."""
    anonymous = APIClient()
    assert {anonymous.get(STATUS).status_code for _ in range(25)} == {401}
    assert not AccessAttempt.objects.exists()
    assert api_client(good_token).get(STATUS).status_code == 200


# --- HTTPS behind a proxy, CSP, redirects -------------------------------------------------------

PROXIED = {"HTTP_HOST": "keeper.example.com", "HTTP_X_FORWARDED_PROTO": "https"}


def proxied_login(settings, ops, **headers):
    """GET then POST the admin login through a TLS proxy, with CSRF checks on."""
    settings.ALLOWED_HOSTS = ["keeper.example.com"]
    client = Client(enforce_csrf_checks=True)
    client.get(LOGIN, **headers)
    token = client.cookies["csrftoken"].value
    return client.post(
        LOGIN,
        {"username": "ops", "password": PASSWORD, "csrfmiddlewaretoken": token},
        HTTP_ORIGIN="https://keeper.example.com",
        **headers,
    )


def test_admin_login_behind_a_tls_proxy_passes_the_csrf_origin_check(settings, ops):
    """With SECURE_PROXY_SSL_HEADER and CSRF_TRUSTED_ORIGINS set, a login posted from
    https://keeper.example.com through the proxy signs in, with secure cookies and HSTS."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.CSRF_TRUSTED_ORIGINS = ["https://keeper.example.com"]
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 3600
    response = proxied_login(settings, ops, **PROXIED)
    assert signed_in(response), response.content[:300]
    assert response.cookies["sessionid"]["secure"] is True
    assert response["Strict-Transport-Security"] == "max-age=3600"


def test_without_the_proxy_settings_the_same_login_fails_the_origin_check(settings, ops, caplog):
    """The control: without SECURE_PROXY_SSL_HEADER and CSRF_TRUSTED_ORIGINS the request
    counts as http:// and Django refuses the https:// Origin."""
    response = proxied_login(settings, ops, **PROXIED)
    assert response.status_code == 403
    assert "Origin checking failed" in caplog.text


def test_ssl_redirect_sends_plain_http_to_https(settings):
    """SECURE_SSL_REDIRECT redirects what the proxy says came in over http only."""
    settings.ALLOWED_HOSTS = ["keeper.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    plain = Client().get(LOGIN, HTTP_HOST="keeper.example.com", HTTP_X_FORWARDED_PROTO="http")
    assert plain.status_code == 301
    assert plain["Location"] == "https://keeper.example.com/admin/login/"
    assert Client().get(LOGIN, **PROXIED).status_code == 200


@pytest.mark.django_db
def test_health_answers_a_direct_probe_over_plain_http(settings):
    """A health probe that calls the server directly over plain HTTP, with a host of
    ALLOWED_HOSTS, gets /health itself, not the redirect to HTTPS that every page gets."""
    settings.ALLOWED_HOSTS = ["keeper.example.com", "127.0.0.1"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    probe = Client().get("/health", HTTP_HOST="127.0.0.1")
    assert probe.status_code in (200, 503) and "status" in probe.json()
    assert Client().get("/sync/status", HTTP_HOST="127.0.0.1").status_code == 301


@pytest.mark.parametrize("path", [LOGIN, "/api/docs/", "/health"])
def test_pages_carry_a_policy_without_inline_scripts(client, path):
    """Pages and the API carry the content security policy: scripts from this site only,
    nothing framing it, no plugins; and the always-on headers."""
    response = client.get(path)
    policy = dict(
        part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_the_api_docs_page_has_no_inline_script(client):
    """/api/docs/ loads Swagger UI and its start script from files (the start script at
    ?script, as JavaScript), so no script sits inline in the page."""
    page = client.get("/api/docs/").content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, flags=re.S)
    assert len(scripts) == 3
    assert all("src=" in attributes and not body.strip() for attributes, body in scripts)
    start = client.get("/api/docs/?script=")
    assert start["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle(" in start.content
    assert json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/x", ""])
def test_a_refused_or_missing_next_lands_on_the_admin(client, ops, next_url):
    """A login whose next points at another site (or is empty) lands on /admin/, never on
    Django's /accounts/profile/."""
    response = client.post(
        f"{LOGIN}?next={next_url}", {"username": "ops", "password": PASSWORD, "next": next_url}
    )
    assert signed_in(response)


def test_a_login_required_page_sends_to_the_admin_login(settings):
    """LOGIN_URL is the admin's login (Django's default /accounts/login/ does not exist),
    LOGIN_REDIRECT_URL its index."""
    assert resolve_url(settings.LOGIN_URL) == LOGIN
    assert resolve_url(settings.LOGIN_REDIRECT_URL) == "/admin/"
