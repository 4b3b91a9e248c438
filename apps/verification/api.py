"""The verification API: POST /api/v1/validate checks one address within a time budget
(apps/verification/validation.py); /api/v1/jobs runs bulk jobs (apps/verification/jobs.py)."""

from __future__ import annotations

import csv
import io
import json

from django.conf import settings
from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.scopes import Scope
from apps.core.api import Conflict, ErrorSerializer, FieldError, PayloadTooLarge, unstorable
from apps.core.request_body import JSONParser
from apps.verification import job_input, jobs, validation
from apps.verification.engine.syntax import MAX_INPUT_LENGTH
from apps.verification.models import JobStatus, VerificationJob, VerificationJobItem

ACCEPTED = 'Send a JSON object with the address as "email", e.g. {"email": "alice@example.com"}.'
VERDICTS = ["deliverable", "undeliverable", "risky", "unknown"]
CHECKS = ["syntax", "dns", "mx", "smtp", "catch_all", "disposable", "role", "free"]
# Mail that decided a verdict the checks could not (apps/verification/engine/evidence.py).
EVIDENCE_FIELDS = {
    "kind": serializers.ChoiceField(["sent_aligned", "hard_bounce"]),
    "seen_at": serializers.DateTimeField(),
    "detail": serializers.CharField(),
}


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
                    "evidence": inline_serializer("ValidateEvidence", EVIDENCE_FIELDS, many=True),
                    "checked_at": serializers.DateTimeField(),
                    "cached": serializers.BooleanField(),
                    "retry_after": serializers.IntegerField(allow_null=True),
                },
            ),
            415: OpenApiResponse(ErrorSerializer, "The Content-Type is not application/json."),
        },
        examples=[OpenApiExample("An address", value={"email": "alice@example.com"})],
    )
    def post(self, request) -> Response:
        try:
            body = request.data
        except ParseError as exc:
            too_deep = exc.get_codes() == "too_deep"
            reason = exc.detail if too_deep else "The body is not valid JSON."
            raise ParseError(f"{reason} {ACCEPTED}", code=exc.get_codes()) from exc
        except UnsupportedMediaType as exc:
            raise UnsupportedMediaType(
                request.content_type, f"Content-Type must be application/json. {ACCEPTED}"
            ) from exc
        email = email_from_body(body)
        return Response(validation.validate(email, settings.MAILSCORE_VALIDATE_BUDGET_SECONDS))


# --- Bulk jobs -----------------------------------------------------------------------------------

CSV_COLUMNS = ["email", "verdict", "reason", "score", *CHECKS, "suggestion", "checked_at"]
# A spreadsheet runs a cell that starts with one of these as a formula: such a cell is written
# with a leading apostrophe (the OWASP advice for CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_ROWS_PER_QUERY = 5000


class RawCsvParser(BaseParser):
    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        return stream.read() if stream is not None else b""


class CsvRenderer(BaseRenderer):
    """Lets content negotiation pick CSV (?format=csv or Accept: text/csv) for job results; the
    view streams the rows itself, so this renders only what is not a row list."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return json.dumps(data).encode() if data is not None else b""


JobCounts = inline_serializer(
    "JobCounts", {verdict: serializers.IntegerField() for verdict in VERDICTS}
)


class JobSerializer(serializers.Serializer):
    """A job as the API answers it (made by _job_body; this describes it for the schema)."""

    id = serializers.UUIDField()
    url = serializers.URLField()
    results_url = serializers.URLField()
    status = serializers.ChoiceField(JobStatus.choices)
    source = serializers.ChoiceField(["json", "csv"])
    total = serializers.IntegerField(help_text="Input rows.")
    unique = serializers.IntegerField(help_text="Distinct addresses, each checked once.")
    progress = inline_serializer(
        "JobProgress",
        {
            "done": serializers.IntegerField(),
            "total": serializers.IntegerField(),
            "percent": serializers.FloatField(),
        },
    )
    counts = JobCounts
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_null=True)


JobCreatedResponse = inline_serializer(
    "JobCreated",
    {
        "id": serializers.UUIDField(),
        "url": serializers.URLField(),
        "results_url": serializers.URLField(),
        "status": serializers.ChoiceField(JobStatus.choices),
        "total": serializers.IntegerField(),
        "unique": serializers.IntegerField(),
        "skipped_rows": serializers.IntegerField(help_text="CSV rows with an empty address cell."),
        "column": serializers.CharField(allow_null=True, help_text="The CSV header read."),
    },
)


class JobResultSerializer(serializers.Serializer):
    """One input row's answer (made by _row_body; this describes it for the schema)."""

    position = serializers.IntegerField(help_text="0-based row of the input.")
    email = serializers.CharField()
    verdict = serializers.ChoiceField(VERDICTS, allow_null=True, help_text="null: not checked yet.")
    reason = serializers.CharField(allow_null=True)
    score = serializers.IntegerField(allow_null=True)
    checks = inline_serializer(
        "JobResultChecks",
        {name: serializers.BooleanField(allow_null=True) for name in CHECKS},
        allow_null=True,
    )
    suggestion = serializers.CharField(allow_null=True)
    evidence = inline_serializer("JobResultEvidence", EVIDENCE_FIELDS, many=True)
    checked_at = serializers.DateTimeField(allow_null=True)


class JobResultsPagination(PageNumberPagination):
    page_size = 500
    page_size_query_param = "page_size"
    max_page_size = 5000


def _job_body(request, job: VerificationJob) -> dict:
    url = request.build_absolute_uri(reverse("job-detail", args=[job.id]))
    return {"id": str(job.id), "url": url, "results_url": f"{url}/results", **jobs.summary(job)}


def _row_body(row: VerificationJobItem) -> dict:
    answer = row.answer or {}
    return {
        "position": row.position,
        "email": row.email,
        "verdict": answer.get("verdict"),
        "reason": answer.get("reason"),
        "score": answer.get("score"),
        "checks": answer.get("checks"),
        "suggestion": answer.get("suggestion"),
        "evidence": answer.get("evidence", []),
        "checked_at": answer.get("checked_at"),
    }


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _csv_lines(job: VerificationJob):
    """The results as CSV, in input order, a few thousand rows per query."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for start in range(0, job.total, CSV_ROWS_PER_QUERY):
        rows = job.items.filter(position__gte=start, position__lt=start + CSV_ROWS_PER_QUERY)
        for row in rows.order_by("position").only("position", "email", "answer"):
            body = _row_body(row)
            checks = body["checks"] or {}
            writer.writerow(
                [_csv_cell(body["email"]), _csv_cell(body["verdict"]), _csv_cell(body["reason"]),
                 _csv_cell(body["score"]), *(_csv_cell(checks.get(name)) for name in CHECKS),
                 _csv_cell(body["suggestion"]), _csv_cell(body["checked_at"])]
            )  # fmt: skip
        yield out.getvalue()
        out.seek(0)
        out.truncate()


class JobViewSet(viewsets.GenericViewSet):
    """Bulk verification jobs: POST a list, follow its progress, read the results."""

    queryset = VerificationJob.objects.all()
    lookup_value_regex = (
        "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
    )
    parser_classes = [JSONParser, RawCsvParser, MultiPartParser]
    required_scopes = {
        "create": Scope.VERIFY,
        "destroy": Scope.VERIFY,
        "list": (Scope.READ, Scope.VERIFY),
        "retrieve": (Scope.READ, Scope.VERIFY),
        "results": (Scope.READ, Scope.VERIFY),
    }

    def get_renderers(self):
        if getattr(self, "action", None) == "results":
            return [JSONRenderer(), CsvRenderer()]
        return super().get_renderers()

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and response.status_code >= 400:
            # Errors are JSON in the API's one shape, whatever format the results were asked in.
            request.accepted_renderer, request.accepted_media_type = (
                JSONRenderer(),
                "application/json",
            )
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        operation_id="jobs_create",
        summary="Start a bulk verification job",
        description=(
            'The addresses as JSON ({"emails": [...]}) or CSV (a text/csv body, or multipart with '
            'a file field named "file"; the column headed "email", else the first). At most '
            "MAILSCORE_JOB_MAX_ADDRESSES addresses and MAILSCORE_JOB_MAX_BYTES bytes. Duplicates "
            "are checked once. The job runs on the verify pool; follow it at `url`."
        ),
        request={
            "application/json": inline_serializer(
                "JobRequest", {"emails": serializers.ListField(child=serializers.CharField())}
            ),
            "text/csv": OpenApiTypes.STR,
            "multipart/form-data": inline_serializer(
                "JobUpload", {"file": serializers.FileField()}
            ),
        },
        responses={
            202: OpenApiResponse(JobCreatedResponse, "Stored and queued."),
            400: OpenApiResponse(
                ErrorSerializer,
                "No addresses, a malformed body or CSV; `error.fields` names the row or field.",
            ),  # fmt: skip
            413: OpenApiResponse(ErrorSerializer, "More addresses or bytes than a job takes."),
            415: OpenApiResponse(ErrorSerializer, "Neither JSON, text/csv nor multipart."),
        },
        examples=[
            OpenApiExample("Addresses", value={"emails": ["alice@example.com", "bob@example.org"]})
        ],
    )
    def create(self, request):
        limit = settings.MAILSCORE_JOB_MAX_ADDRESSES
        size = request.META.get("CONTENT_LENGTH") or "0"
        if size.isdigit() and int(size) > settings.MAILSCORE_JOB_MAX_BYTES:
            raise PayloadTooLarge(
                f"The body is {int(size):,} bytes; a job takes at most "
                f"{settings.MAILSCORE_JOB_MAX_BYTES:,} (MAILSCORE_JOB_MAX_BYTES)."
            )
        try:
            try:
                data = request.data
            except ParseError as exc:
                raise ParseError(
                    f"The body cannot be read: {exc.detail} {job_input.JSON_ACCEPTED}"
                ) from exc
            except UnsupportedMediaType as exc:
                raise UnsupportedMediaType(
                    request.content_type,
                    "Content-Type must be application/json, text/csv or multipart/form-data. "
                    f"{job_input.JSON_ACCEPTED} Or: {job_input.CSV_ACCEPTED}",
                ) from exc
            found = self._input(request, data, limit)
        except job_input.InputError as exc:
            if exc.code == "too_many":
                raise PayloadTooLarge(exc.message) from exc
            raise FieldError(exc.field, exc.message) from exc
        job = jobs.create_job(found.emails, source=found.source, created_by=request.user.name)
        body = _job_body(request, job)
        created = {
            key: body[key] for key in ("id", "url", "results_url", "status", "total", "unique")
        }
        created.update(skipped_rows=found.skipped_rows, column=found.column)
        return Response(created, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    @staticmethod
    def _input(request, data, limit: int) -> job_input.JobInput:
        media = (request.content_type or "").split(";")[0].strip().lower()
        if media == "text/csv":
            return job_input.from_csv(data or b"", limit, where="body")
        if media == "multipart/form-data":
            upload = request.FILES.get("file")
            if upload is None:
                raise job_input.InputError(
                    "file", f'No file field named "file". {job_input.CSV_ACCEPTED}'
                )
            return job_input.from_csv(upload.read(), limit)
        return job_input.from_json(data, limit)

    @extend_schema(operation_id="jobs_list", summary="List bulk verification jobs",
                   responses={200: JobSerializer(many=True)})  # fmt: skip
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([_job_body(request, job) for job in page])

    @extend_schema(operation_id="jobs_retrieve", summary="A job's status, counts and progress",
                   responses={200: JobSerializer})  # fmt: skip
    def retrieve(self, request, pk=None):
        return Response(_job_body(request, self.get_object()))

    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel a job",
        description="What is checked stays readable; the rest is not checked.",
        responses={
            200: JobSerializer,
            409: OpenApiResponse(ErrorSerializer, "The job is over."),
        },
    )
    def destroy(self, request, pk=None):
        job = self.get_object()
        try:
            job = jobs.end_job(job.id, JobStatus.CANCELLED)
        except jobs.JobError as exc:
            raise Conflict(str(exc)) from exc
        return Response(_job_body(request, job))

    @extend_schema(
        operation_id="jobs_results",
        summary="A job's results, in input order",
        description=(
            "JSON, paginated (page, page_size up to 5000), or the whole list as CSV with "
            "?format=csv or Accept: text/csv: one row per input row, the checks as columns. Rows "
            "not checked yet have no verdict."
        ),
        parameters=[
            OpenApiParameter("page", int, description="Page number (JSON)."),
            OpenApiParameter("page_size", int, description="Rows per page (JSON), at most 5000."),
            OpenApiParameter("format", str, enum=["json", "csv"]),
        ],
        responses={
            (200, "application/json"): JobResultSerializer(many=True),
            (200, "text/csv"): OpenApiTypes.STR,
        },
    )
    @action(detail=True, methods=["get"], pagination_class=JobResultsPagination)
    def results(self, request, pk=None):
        job = self.get_object()
        if request.accepted_renderer.format == "csv":
            response = StreamingHttpResponse(
                _csv_lines(job), content_type="text/csv; charset=utf-8"
            )
            response["Content-Disposition"] = f'attachment; filename="job-{job.id}.csv"'
            return response
        rows = job.items.order_by("position").only("position", "email", "answer")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response([_row_body(row) for row in page])
