"""System checks: a rate limit that cannot be read stops `manage.py check`, `migrate` (the
deploy's migration job) and `runserver`, rather than failing the first API request."""

from __future__ import annotations

from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from apps.accounts.throttling import RATE_SETTINGS, rate_for


@register()
def throttle_rates_are_readable(app_configs, **kwargs) -> list[Error]:
    errors = []
    for scope, setting in RATE_SETTINGS.items():
        try:
            rate_for(scope)
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="accounts.E001", obj=setting))
    return errors
