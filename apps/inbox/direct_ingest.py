"""The web's busiest request, answered without Django's middleware chain and DRF's dispatch: an
API key's POST of a raw message to the ingest route.

Django's handler, its twelve middleware and DRF's negotiation, permission and throttle
machinery took about a sixth of the web's CPU per ingest (0.85 of it is left without them,
docs/benchmarks.md), around a view that is a key check, a count and a store. This WSGI layer
runs the same steps, through the same functions, for the request that matters:

- Django's own request object, host check (ALLOWED_HOSTS) and HTTPS redirect check, the API
  key's authentication, the ingest action's scope, the key's rate limit, ingest_raw, the view's
  answer and DRF's JSON renderer;
- the response headers of the middleware that set any on this answer (security headers,
  Content-Security-Policy, X-Frame-Options, Content-Length), by calling their process_response;
- django-prometheus's request and response metrics, by calling its middleware's hooks with the
  route's resolver match, so /metrics counts these requests as the view's;
- request_started and request_finished (Django's connection handling), and the log line for a
  refusal, as Django's handler sends them.

Only the plain case is answered here: a message accepted (202), found stored (200) or refused as
not mail (422). Anything else goes to Django's handler untouched, with the body it sent: another
route, method, content type or Accept, a query string, a body without a length or over the
limit, an empty body, a host not allowed, an HTTPS redirect, no key or a refused one, a missing
scope, a used-up limit, a store that failed (503). A request handed on after its key was
counted is counted again, which a window already used up can bear.
tests/inbox/test_direct_ingest.py holds the two answers to the same requests side by side,
header by header and metric by metric.
"""

from __future__ import annotations

import io
import logging

from csp.middleware import CSPMiddleware
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest, get_script_name
from django.core.signals import request_started
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import resolve, set_script_prefix
from django.utils.log import log_response
from django_prometheus.middleware import PrometheusAfterMiddleware, PrometheusBeforeMiddleware
from django_prometheus.utils import Time
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.accounts.authentication import client_for_key
from apps.accounts.throttling import count_against_limit
from apps.core import metrics
from apps.core.api import exception_handler
from apps.inbox.api import accepted_body, accepted_status, not_mail
from apps.inbox.ingest import ingest_raw
from apps.inbox.models import MessageSource

logger = logging.getLogger(__name__)

ROUTE = "/api/v1/messages"
MEDIA_TYPE = "message/rfc822"
# What a client may say it accepts for the JSON answer to come from here (no Accept is */*, as
# for DRF); DRF's negotiation handles every other one (an indent parameter, a list of types, an
# empty one, one it cannot render).
PLAIN_ACCEPT = frozenset({"*/*", "application/json", "application/*"})
# The middleware whose process_response sets a header on this answer, in the order Django's
# chain calls them (innermost first); a test checks that the answers match Django's.
RESPONSE_MIDDLEWARE = (XFrameOptionsMiddleware, CommonMiddleware, CSPMiddleware, SecurityMiddleware)


def _unused_get_response(request):  # middleware needs one; only their hooks are called here
    raise AssertionError("the direct ingest calls middleware hooks, never the chain")


class DirectIngest:
    """WSGI application: the plain ingest POST answered here, every other request by Django."""

    def __init__(self, django: WSGIHandler) -> None:
        self.django = django
        self.limit = settings.MAILSCORE_MAX_MESSAGE_BYTES
        self.match = resolve(ROUTE)
        view_function = self.match.func
        # The view's own scope and Allow header, worked out as DRF's viewset view function does
        # on each request (which also answers HEAD where the route answers GET).
        view = view_function.cls(**view_function.initkwargs)
        actions = dict(view_function.actions)
        if "get" in actions:
            actions.setdefault("head", actions["get"])
        for method, action in actions.items():
            setattr(view, method, getattr(view, action))
        self.scope = view.required_scopes[view_function.actions["post"]]
        self.allow = ", ".join(view.allowed_methods)
        self.renderer = JSONRenderer()
        self.before = PrometheusBeforeMiddleware(_unused_get_response)
        self.after = PrometheusAfterMiddleware(_unused_get_response)
        self.response_middleware = [each(_unused_get_response) for each in RESPONSE_MIDDLEWARE]
        # Of those, the two whose process_request may answer this request (an HTTPS redirect, a
        # host not allowed); _ingest calls them in the chain's order, Security first.
        _, self.common, _, self.security = self.response_middleware

    def __call__(self, environ: dict, start_response):
        if not self._plain(environ):
            return self.django(environ, start_response)
        response = self._answer(environ)
        if response is None:
            metrics.count_direct_ingest("handed_on")
            return self.django(environ, start_response)
        metrics.count_direct_ingest("answered")
        status = f"{response.status_code} {response.reason_phrase}"
        start_response(status, list(response.items()))
        return response

    def _plain(self, environ: dict) -> bool:
        """The request's line and headers say it is the plain ingest: nothing read yet."""
        if environ.get("PATH_INFO") != ROUTE or environ.get("REQUEST_METHOD") != "POST":
            return False
        media_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        length = environ.get("CONTENT_LENGTH", "")
        return (
            media_type == MEDIA_TYPE
            and length.isdigit()
            and 0 < int(length) <= self.limit
            and "HTTP_TRANSFER_ENCODING" not in environ
            and not environ.get("QUERY_STRING")
            and environ.get("HTTP_ACCEPT", "*/*").strip().lower() in PLAIN_ACCEPT
            and bool(environ.get("HTTP_X_API_KEY", "").strip())
        )

    def _answer(self, environ: dict) -> HttpResponse | None:
        """The answer, or None to hand the request to Django (its body put back for it)."""
        started = Time()
        set_script_prefix(get_script_name(environ))
        request_started.send(sender=WSGIHandler, environ=environ)
        request = WSGIRequest(environ)
        try:
            answered = self._ingest(request)
        except Exception:  # noqa: BLE001 (Django answers it: 401, 403, 400, 413, 503, ...)
            # A failed store stored nothing, and one that did is found as a copy.
            logger.debug("ingest handed to Django's handler", exc_info=True)
            answered = None
        if answered is None:
            if "_body" in request.__dict__:
                environ["wsgi.input"] = io.BytesIO(request.body)  # for the handler to read again
            return None
        result, limit_headers = answered
        request.resolver_match = self.match
        # Counted once the request is known to be answered here; timed from its start, as the
        # middleware at each end of Django's chain would have.
        self.before.process_request(request)
        self.after.process_request(request)
        request.prometheus_before_middleware_event = started
        request.prometheus_after_middleware_event = started
        self.after.process_view(request, self.match.func, self.match.args, self.match.kwargs)
        body = accepted_body(request, result)
        if result.refused:
            response = exception_handler(not_mail(result, body), {"view": self})
        else:
            response = Response(body, status=accepted_status(result))
        response = self._rendered(self.after.process_template_response(request, response),
                                  limit_headers)  # fmt: skip
        self.after.process_response(request, response)
        for middleware in self.response_middleware:
            response = middleware.process_response(request, response)
        response = self.before.process_response(request, response)
        # What Django's handler does with every answer: the request's files closed with it, and
        # a refusal (the 422) logged on django.request.
        response._resource_closers.append(request.close)
        if response.status_code >= 400:
            log_response("%s: %s", response.reason_phrase, request.path, response=response,
                         request=request)  # fmt: skip
        return response

    def _ingest(self, request: WSGIRequest):
        """(the ingest's result, the rate limit's headers), or None where Django is to answer."""
        if self.security.process_request(request) or self.common.process_request(request):
            return None  # a redirect (HTTPS, www)
        client = client_for_key(request.META["HTTP_X_API_KEY"].strip())
        if not client.has_scope(self.scope):
            return None
        limit_headers, refusal = count_against_limit(client, self.scope)
        if refusal is not None:
            return None
        raw = request.body
        if not raw.strip():
            return None  # an empty message: the view's 400
        result = ingest_raw(raw, source=MessageSource.API, source_detail=f"key {client.name}")
        return result, limit_headers

    def _rendered(self, response: Response, limit_headers: dict[str, str]) -> Response:
        # What DRF's finalize_response and rendering do for the API's one renderer.
        response.accepted_renderer = self.renderer
        response.accepted_media_type = self.renderer.media_type
        response.renderer_context = {}
        response["Allow"] = self.allow
        for name, value in limit_headers.items():
            response[name] = value
        return response.render()
