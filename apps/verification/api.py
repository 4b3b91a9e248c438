"""POST /api/v1/validate: one address checked within a time budget (apps/verification/validation.py)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.scopes import Scope
from apps.core.api import FieldError, unstorable
from apps.verification import validation
from apps.verification.engine.syntax import MAX_INPUT_LENGTH

ACCEPTED = 'Send a JSON object with the address as "email", e.g. {"email": "alice@example.com"}.'
VERDICTS = ["deliverable", "undeliverable", "risky", "unknown"]
CHECKS = ["syntax", "dns", "mx", "smtp", "catch_all", "disposable", "role", "free"]


def email_from_body(body) -> str:
    """The address in a request body, or a 400 naming the field and what is accepted."""
    if not isinstance(body, dict):
        raise FieldError("body", f"The body must be a JSON object. {ACCEPTED}")
    unknown = sorted(set(body) - {"email"})
    if unknown:
        raise FieldError(unknown, f"Unknown field {unknown[0]!r}. {ACCEPTED}")
    if "email" not in body:
        raise FieldError("email", f'"email" is required. {ACCEPTED}', code="required")
    email = body["email"]
    if not isinstance(email, str):
        raise FieldError("email", f'"email" must be a string. {ACCEPTED}')
    if not email.strip():
        raise FieldError("email", f'"email" is empty. {ACCEPTED}', code="blank")
    if len(email) > MAX_INPUT_LENGTH:
        raise FieldError(
            "email",
            f'"email" is {len(email)} characters long; an address has at most {MAX_INPUT_LENGTH}.',
            code="max_length",
        )
    problem = unstorable(email)
    if problem:
        raise FieldError("email", f'"email" holds {problem}, which is not text.')
    return email


class ValidateView(APIView):
    required_scope = Scope.VERIFY
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="validate_address",
        summary="Verify an address",
        description=(
            "Checks one address (syntax, DNS, lists, SMTP without sending mail) within "
            "MAILSCORE_VALIDATE_BUDGET_SECONDS. Answers are cached per verdict. When the "
            "budget runs out or the server greylists, the answer is unknown with retry_after, "
            "and the check finishes in the background: ask again after retry_after seconds."
        ),
        request=inline_serializer(
            "ValidateRequest", {"email": serializers.CharField(max_length=MAX_INPUT_LENGTH)}
        ),
        responses={
            200: inline_serializer(
                "ValidateResult",
                {
                    "email": serializers.CharField(),
                    "verdict": serializers.ChoiceField(VERDICTS),
                    "reason": serializers.CharField(),
                    "score": serializers.IntegerField(min_value=0, max_value=100),
                    "checks": inline_serializer(
                        "ValidateChecks",
                        {name: serializers.BooleanField(allow_null=True) for name in CHECKS},
                    ),
                    "suggestion": serializers.CharField(allow_null=True),
                    "checked_at": serializers.DateTimeField(),
                    "cached": serializers.BooleanField(),
                    "retry_after": serializers.IntegerField(allow_null=True),
                },
            )
        },
        examples=[OpenApiExample("An address", value={"email": "alice@example.com"})],
    )
    def post(self, request) -> Response:
        try:
            body = request.data
        except ParseError as exc:
            raise ParseError(f"The body is not valid JSON. {ACCEPTED}") from exc
        except UnsupportedMediaType as exc:
            raise UnsupportedMediaType(
                request.content_type, f"Content-Type must be application/json. {ACCEPTED}"
            ) from exc
        email = email_from_body(body)
        return Response(validation.validate(email, settings.MAILSCORE_VALIDATE_BUDGET_SECONDS))
