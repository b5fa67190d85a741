"""Middleware of the Control Room API (``MIDDLEWARE`` in ``keeper_site/settings.py``)."""

from __future__ import annotations

import json

from django.http.response import HttpResponseRedirectBase
from django.utils.cache import patch_cache_control

from syncq.api import _is_api_path


class APIRedirectMiddleware:
    """Redirects on the API's paths (``APPEND_SLASH``'s 301 from ``/sync/items`` to
    ``/sync/items/``, made by ``CommonMiddleware``) answer JSON, ``{"detail": …, "location":
    …}``, rather than an empty HTML page, with ``Cache-Control: no-store`` like every other
    answer of the API: a browser or proxy keeps a 301 otherwise. Listed before (outside)
    ``django.middleware.common.CommonMiddleware`` so that it sees that redirect."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if isinstance(response, HttpResponseRedirectBase) and _is_api_path(request.path_info):
            location = response["Location"]
            response.content = json.dumps(
                {"detail": f"This resource is at {location}.", "location": location},
                separators=(",", ":"),
            )
            response["Content-Type"] = "application/json"
            patch_cache_control(response, no_store=True)
        return response
