"""The reviewer's workbench in the admin: the queue of messages to review, each message's page
with its results in words, and the actions on both. Every decision goes through
apps.review.services, which applies it and keeps it as feedback."""

from __future__ import annotations

import json
from datetime import datetime, time

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR, ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    QueryDict,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.html import format_html

from apps.inbox.models import (
    OPEN,
    PRIORITY_LEVELS,
    REVIEWABLE,
    ImapMailbox,
    Message,
    MessageSource,
    MessageStatus,
)
from apps.review import (
    admin_config,  # noqa: F401  the admin loads admin.py only: this registers the review records
    workbench,
)
from apps.review.models import Feedback, SavedView
from apps.review.services import (
    UNCHANGED,
    Decision,
    ReviewError,
    accepted_categories,
    record_feedback,
    rerun_reviewed,
)
from apps.verification.engine.result import Verdict

# The admin serves nothing from elsewhere and runs no inline script: a message's own content
# can never load or run anything in a reviewer's browser, even if escaping failed somewhere.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "img-src 'self' data:",
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])  # fmt: skip

THREADS_VAR = "threads"
RECEIVED_FROM_VAR = "received_at__gte"
RECEIVED_BEFORE_VAR = "received_at__lt"
# Bulk actions list at most this many of the messages they left alone, with why.
LEFT_ALONE_SHOWN = 10
DRAFT_SOURCES = {
    "template": "a reply template",
    "retrieved": "a reply a reviewer approved for a similar message",
    "generator": "the local text generator",
}


def with_csp(response: HttpResponse) -> HttpResponse:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response


def reviewers():
    """Who a message can be assigned to: active staff."""
    User = get_user_model()
    return User.objects.filter(is_active=True, is_staff=True).order_by(User.USERNAME_FIELD)


def username_lookup() -> str:
    return f"assignee__{get_user_model().USERNAME_FIELD}"


# --- The queue's filters. Each is a plain GET parameter, so a filtered queue is a link. ------


class QueueFilter(admin.SimpleListFilter):
    """Which part of the work: by default (no parameter) what is still to do."""

    title = "queue"
    parameter_name = "status"
    default = "open"
    choices_q = {
        "open": ("To do (needs review, triaged)", Q(status__in=OPEN)),
        "done": ("Done", Q(status=MessageStatus.DONE)),
        "failed": ("Failed", Q(status=MessageStatus.FAILED)),
        "pipeline": (
            "In the pipeline",
            Q(status__in=(MessageStatus.QUEUED, MessageStatus.PROCESSING)),
        ),
        "all": ("All", Q()),
    }

    def lookups(self, request, model_admin):
        return [(value, label) for value, (label, _) in self.choices_q.items()]

    def queryset(self, request, queryset):
        value = self.value() or self.default
        if value not in self.choices_q:
            raise IncorrectLookupParameters(f"Unknown queue {value!r}.")
        return queryset.filter(self.choices_q[value][1])

    def choices(self, changelist):
        current = self.value() or self.default
        for value, label in self.lookup_choices:
            yield {
                "selected": value == current,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }


class ChoiceFilter(admin.SimpleListFilter):
    """A filter whose every choice selects with one Q object."""

    def choice_q(self, request, value: str) -> Q:
        raise NotImplementedError

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return None
        return queryset.filter(self.choice_q(request, value))


class NeedsReviewFilter(ChoiceFilter):
    title = "needs review"
    parameter_name = "needs_review"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def choice_q(self, request, value):
        needs = Q(status=MessageStatus.NEEDS_REVIEW)
        return needs if value == "yes" else ~needs


class LevelFilter(ChoiceFilter):
    """The level a reviewer set, else the model's."""

    title = "level"
    parameter_name = "priority"

    def lookups(self, request, model_admin):
        return [(level, level) for level in PRIORITY_LEVELS] + [("none", "No level")]

    def choice_q(self, request, value):
        return workbench.effective_level_q("" if value == "none" else value)


class CategoryFilter(ChoiceFilter):
    """The category a reviewer set, else the model's."""

    title = "category"
    parameter_name = "category"

    def lookups(self, request, model_admin):
        return [(name, name) for name in accepted_categories()]

    def choice_q(self, request, value):
        return workbench.effective_category_q(value)


class AssigneeFilter(ChoiceFilter):
    title = "assignee"
    parameter_name = "assignee"

    def lookups(self, request, model_admin):
        people = [(u.get_username(), u.get_username()) for u in reviewers()]
        return [("me", "Me"), ("unassigned", "Unassigned"), *people]

    def choice_q(self, request, value):
        if value == "me":
            return Q(assignee=request.user)
        if value == "unassigned":
            return Q(assignee__isnull=True)
        return Q(**{username_lookup(): value})


class TrustFilter(ChoiceFilter):
    title = "sender trust"
    parameter_name = "trust"

    def lookups(self, request, model_admin):
        return list(workbench.TRUST_LABELS.items())

    def choice_q(self, request, value):
        return Q(sender_trust=value)


class VerdictFilter(ChoiceFilter):
    title = "reply address"
    parameter_name = "verdict"

    def lookups(self, request, model_admin):
        return [(str(v), workbench.VERDICT_WORDS[str(v)]) for v in Verdict] + [
            ("none", workbench.VERDICT_WORDS["none"])
        ]

    def choice_q(self, request, value):
        return Q(sender_verdict=value)


class MailboxFilter(ChoiceFilter):
    """Mail fetched from one IMAP mailbox, whose name starts each message's source detail."""

    title = "mailbox"
    parameter_name = "mailbox"

    def lookups(self, request, model_admin):
        return [(name, name) for name in ImapMailbox.objects.values_list("name", flat=True)]

    def choice_q(self, request, value):
        return Q(source=MessageSource.IMAP, source_detail__startswith=f"{value}/")


class ReceivedRangeFilter(admin.ListFilter):
    """Received from one day up to (not including) another, from two date inputs."""

    title = "date received"
    template = "review/filters/received_range.html"
    parameters = (RECEIVED_FROM_VAR, RECEIVED_BEFORE_VAR)

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        for name in self.parameters:
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1].strip()

    def has_output(self) -> bool:
        return True

    def expected_parameters(self):
        return list(self.parameters)

    @staticmethod
    def moment(value: str) -> datetime:
        """Midnight of a YYYY-MM-DD day in the admin's time zone, or an ISO date and time."""
        try:
            found = parse_datetime(value)
            if found is None:
                day = parse_date(value)
                found = datetime.combine(day, time.min) if day else None
        except ValueError:
            found = None
        if found is None:
            raise IncorrectLookupParameters(f"{value!r} is not a date; use YYYY-MM-DD.")
        return timezone.make_aware(found) if timezone.is_naive(found) else found

    def queryset(self, request, queryset):
        bounds = {name: self.moment(v) for name, v in self.used_parameters.items() if v}
        return queryset.filter(**bounds) if bounds else None

    def choices(self, changelist):
        kept = [
            (name, value)
            for name, values in changelist.filter_params.items()
            if name not in self.parameters
            for value in values
        ]
        yield {
            "kept": kept,
            "received_from": self.used_parameters.get(RECEIVED_FROM_VAR, ""),
            "received_before": self.used_parameters.get(RECEIVED_BEFORE_VAR, ""),
            "active": any(self.used_parameters.values()),
            "clear": changelist.get_query_string(remove=list(self.parameters)),
        }


class QueueChangeList(ChangeList):
    """The changelist with the "one row per thread" switch, applied last so that it picks each
    thread's newest message among those the filters and the search selected."""

    def get_filters_params(self, params=None):
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(THREADS_VAR, None)
        return lookup_params

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        if request.GET.get(THREADS_VAR) == "1":
            queryset = workbench.latest_of_each_thread(queryset)
        return queryset


# --- Forms ---------------------------------------------------------------------------------


def category_choices(current: str = "") -> list[tuple[str, str]]:
    names = accepted_categories()
    if current and current not in names:
        names = [current, *names]
    blank = [] if current else [("", "—")]
    return blank + [(name, name) for name in names]


def level_choices(current: str = "") -> list[tuple[str, str]]:
    levels = list(PRIORITY_LEVELS)
    if current and current not in levels:
        levels.insert(0, current)
    blank = [] if current else [("", "—")]
    return blank + [(level, level) for level in levels]


class QueueActionForm(helpers.ActionForm):
    """The action bar above the queue, with the values some actions need: the category, level
    or assignee to set."""

    category = forms.ChoiceField(label="category", required=False)
    priority = forms.ChoiceField(label="level", required=False)
    assignee = forms.ChoiceField(label="assignee", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["category"].choices = [("", "---")] + [
            (name, name) for name in accepted_categories()
        ]
        self.fields["priority"].choices = [("", "---")] + [(lv, lv) for lv in PRIORITY_LEVELS]
        people = [(u.get_username(), u.get_username()) for u in reviewers()]
        self.fields["assignee"].choices = [("", "---"), ("me", "me"), ("nobody", "nobody"),
                                           *people]  # fmt: skip


class ReviewForm(forms.Form):
    """The message page's form: the reviewer's decision on category, level, assignee, draft."""

    category = forms.ChoiceField(required=False)
    priority = forms.ChoiceField(label="Level", required=False)
    assignee = forms.ChoiceField(required=False)
    draft = forms.CharField(
        required=False, strip=False, widget=forms.Textarea(attrs={"rows": 16, "cols": 72})
    )

    def __init__(self, *args, message: Message, user, offers_draft: bool, **kwargs):
        kwargs.setdefault("initial", {
            "category": message.effective_category,
            "priority": message.effective_priority,
            "assignee": str(message.assignee_id or ""),
            "draft": message.reviewed_draft or message.draft_reply,
        })  # fmt: skip
        super().__init__(*args, **kwargs)
        self.fields["category"].choices = category_choices(message.effective_category)
        self.fields["priority"].choices = level_choices(message.effective_priority)
        people = list(reviewers())
        if message.assignee is not None and message.assignee not in people:
            people.insert(0, message.assignee)
        self.fields["assignee"].choices = [("", "nobody")] + [
            (str(u.pk), f"me ({u.get_username()})" if u.pk == user.pk else u.get_username())
            for u in people
        ]
        self.people = {str(u.pk): u for u in people}
        if not offers_draft:
            del self.fields["draft"]


PAGE_ACTIONS = ("confirm", "save", "assign", "approve_draft", "done", "rerun")


def decision_from(form: ReviewForm, message: Message, action: str) -> Decision:
    """What the reviewer changed on the page, plus what the button they pressed asks for."""
    data = form.cleaned_data
    decision = Decision()
    if data["category"] and data["category"] != message.effective_category:
        decision.category = data["category"]
    if data["priority"] and data["priority"] != message.effective_priority:
        decision.priority = data["priority"]
    if data["assignee"] != str(message.assignee_id or ""):
        decision.assignee = form.people.get(data["assignee"])
    if "draft" in form.fields:
        # Browsers send a textarea's line breaks as CRLF.
        draft = data["draft"].replace("\r\n", "\n")
        if draft != (message.reviewed_draft or message.draft_reply) or action == "approve_draft":
            decision.draft = draft
    elif action == "approve_draft":
        raise ReviewError("draft", "This message has no draft to approve.")
    decision.confirm = action == "confirm"
    decision.approve_draft = action == "approve_draft"
    decision.done = action == "done"
    return decision


def changes_anything(decision: Decision) -> bool:
    return (
        decision.confirm
        or decision.approve_draft
        or decision.done
        or decision.category is not None
        or decision.priority is not None
        or decision.draft is not None
        or decision.assignee is not UNCHANGED
    )


# --- The Message admin ---------------------------------------------------------------------


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    change_list_template = "review/message_change_list.html"
    list_display = ["sender", "subject_column", "summary_column", "category_column",
                    "level_column", "language", "status", "assignee", "age"]  # fmt: skip
    list_display_links = ["subject_column"]
    list_filter = [QueueFilter, NeedsReviewFilter, LevelFilter, CategoryFilter, AssigneeFilter,
                   TrustFilter, VerdictFilter, MailboxFilter, ReceivedRangeFilter]  # fmt: skip
    list_select_related = ["assignee"]
    search_fields = ["from_address", "from_name", "subject", "message_id_header"]
    search_help_text = "Sender address or name, subject or Message-ID."
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over every partition per page
    show_facets = admin.ShowFacets.NEVER
    actions_on_top, actions_on_bottom = True, False
    action_form = QueueActionForm
    actions = ["confirm_selected", "set_category", "set_priority", "mark_done", "assign_selected",
               "rerun_selected"]  # fmt: skip

    def get_queryset(self, request):
        # The list never shows the bytes or the parsed form, the table's two large columns.
        queryset = workbench.with_queue_order(self.model._default_manager.get_queryset())
        return queryset.order_by(*self.get_ordering(request)).defer("raw", "parsed")

    def get_ordering(self, request):
        # Annotations of get_queryset, which the ordering attribute's checks cannot see.
        return workbench.QUEUE_ORDERING

    def get_changelist(self, request, **kwargs):
        return QueueChangeList

    def lookup_allowed(self, lookup, value, request=None):
        # The date range's parameters are plain field lookups, spelled out so that changing
        # the defaults of lookup_allowed cannot silently break shared links.
        if lookup in (RECEIVED_FROM_VAR, RECEIVED_BEFORE_VAR):
            return True
        return super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request) -> bool:
        return False  # mail arrives through ingest, never typed in

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)

    def get_urls(self):
        save_view = path(
            "save-view/",
            self.admin_site.admin_view(self.save_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_save_view",
        )
        return [save_view, *super().get_urls()]

    # The queue's columns.

    @admin.display(description="sender", ordering="from_address")
    def sender(self, obj: Message) -> str:
        badge = workbench.trust_badge(obj)
        badge_html = ""
        if badge:
            badge_html = format_html(
                '<span class="trust-badge trust-{}" title="{}">{}</span>',
                badge.level,
                badge.reason,
                badge.label,
            )
        return format_html(
            '<span class="sender-name">{}</span> <span class="sender-address">{}</span> {}',
            obj.from_name,
            obj.from_address,
            badge_html,
        )

    @admin.display(description="subject", ordering="subject")
    def subject_column(self, obj: Message) -> str:
        return obj.subject or "(no subject)"

    @admin.display(description="summary")
    def summary_column(self, obj: Message) -> str:
        return format_html(
            '<span class="summary" title="{}">{}</span>',
            obj.summary,
            workbench.truncate(obj.summary, 120),
        )

    @admin.display(description="category")
    def category_column(self, obj: Message) -> str:
        if obj.reviewed_category:
            said = f"reviewed; the model said {obj.category or 'nothing'}"
            return format_html('<span class="category reviewed" title="{}">{} ✓</span>', said,
                               obj.reviewed_category)  # fmt: skip
        if not obj.category:
            return ""
        return format_html(
            '<span class="category">{}</span> <span class="confidence">{}</span>',
            obj.category,
            workbench.percent(obj.category_confidence),
        )

    @admin.display(description="level", ordering="level_rank")
    def level_column(self, obj: Message) -> str:
        level = obj.effective_priority
        if not level:
            return ""
        reason = workbench.top_reason(obj)
        reviewed = " reviewed" if obj.reviewed_priority else ""
        return format_html(
            '<span class="level level-{}{}">{}</span> <span class="top-reason" title="{}">{}</span>',
            level,
            reviewed,
            level,
            reason,
            workbench.truncate(reason, 48),
        )

    @admin.display(description="age", ordering="received_at")
    def age(self, obj: Message) -> str:
        return format_html(
            '<span title="{}">{}</span>',
            f"received {obj.received_at:%Y-%m-%d %H:%M} UTC",
            workbench.age_in_words(obj.received_at, timezone.now()),
        )

    # The queue itself.

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = {**(extra_context or {}), **self.queue_context(request)}
        return with_csp(super().changelist_view(request, extra_context))

    def queue_context(self, request: HttpRequest) -> dict:
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        waiting = Message.objects.filter(status__in=OPEN).aggregate(**{
            level: Count("id", filter=workbench.effective_level_q(level))
            for level in PRIORITY_LEVELS
        })  # fmt: skip
        level_counts = [
            {
                "level": level,
                "count": waiting[level],
                "url": f"{url}?priority={level}",
                "selected": request.GET.get("priority") == level,
            }
            for level in PRIORITY_LEVELS
        ]
        query = shareable_query(request.GET)
        toggled = query.copy()
        if toggled.get(THREADS_VAR) == "1":
            toggled.pop(THREADS_VAR)
        else:
            toggled[THREADS_VAR] = "1"
        return {
            "title": "Review queue",
            "level_counts": level_counts,
            "saved_views": SavedView.objects.all()[:100],
            "current_query": query.urlencode(),
            "can_save_view": request.user.has_perm("review.add_savedview"),
            "one_row_per_thread": request.GET.get(THREADS_VAR) == "1",
            "threads_toggle_url": f"{url}?{toggled.urlencode()}" if toggled else url,
            "queue_url": url,
        }

    def save_view(self, request: HttpRequest) -> HttpResponse:
        """Keep the queue's current query string under a name, as a link above the queue."""
        return with_csp(self._save_view(request))

    @staticmethod
    def _saved_view_error(request, url: str, query: str, message: str) -> HttpResponse:
        messages.error(request, message)
        return HttpResponseRedirect(f"{url}?{query}" if query else url)

    def _save_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("review.add_savedview"):
            raise PermissionDenied
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        name = request.POST.get("name", "").strip()
        query = shareable_query(QueryDict(request.POST.get("query", "").lstrip("?"))).urlencode()
        limit = SavedView._meta.get_field("name").max_length
        query_limit = SavedView._meta.get_field("query").max_length
        if not name:
            return self._saved_view_error(request, url, query, "Give the view a name to save it.")
        if len(name) > limit:
            return self._saved_view_error(
                request, url, query, f"A view's name has at most {limit} characters."
            )
        if len(query) > query_limit:
            return self._saved_view_error(
                request, url, query, f"This view's filters are too long to save (over "
                f"{query_limit} characters); remove some."
            )  # fmt: skip
        if SavedView.objects.filter(name=name).exists():
            return self._saved_view_error(
                request, url, query, f"A view called {name!r} exists already; choose another "
                "name, or delete that one under Review > Saved views."
            )  # fmt: skip
        SavedView.objects.create(name=name, query=query, created_by=request.user)
        messages.success(request, f"Saved the view {name!r}.")
        return HttpResponseRedirect(f"{url}?{query}" if query else url)

    # Bulk actions: each decision goes through record_feedback, one message at a time, so that
    # one message the chain is still working on leaves the others done.

    @staticmethod
    def selected(request, queryset) -> tuple[list[int], list[str]]:
        """The ids to act on, and why any ticked message is not among them: the action runs on
        the queue as it is now, which a colleague may have changed since the page was shown."""
        ids = list(queryset.order_by().values_list("id", flat=True))
        if request.POST.get("select_across") == "1":
            return ids, []
        ticked = {int(v) for v in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME) if v.isdigit()}
        gone = sorted(ticked - set(ids))
        return ids, [f"Message {message_id} is no longer in this view; it changed since the page "
                     "was shown." for message_id in gone]  # fmt: skip

    def _decide_each(self, request, queryset, decision: Decision, done_words: str) -> None:
        changed = 0
        ids, left_alone = self.selected(request, queryset)
        for message_id in ids:
            try:
                record_feedback(message_id, decision, user=request.user)
            except ReviewError as exc:
                left_alone.append(exc.message)
            except Message.DoesNotExist:
                left_alone.append(f"Message {message_id} is no longer stored.")
            else:
                changed += 1
        self.report(request, changed, done_words, left_alone)

    def report(self, request, changed: int, done_words: str, left_alone: list[str]) -> None:
        noun = "message" if changed == 1 else "messages"
        if changed or not left_alone:
            self.message_user(request, f"{done_words}: {changed} {noun}.", messages.SUCCESS)
        if left_alone:
            shown = "; ".join(left_alone[:LEFT_ALONE_SHOWN])
            more = len(left_alone) - LEFT_ALONE_SHOWN
            shown += f"; and {more} more" if more > 0 else ""
            self.message_user(request, f"Left alone {len(left_alone)}: {shown}", messages.WARNING)

    def _action_value(self, request, field: str) -> str | None:
        form = QueueActionForm(request.POST)
        form.fields["action"].choices = self.get_action_choices(request)
        if not form.is_valid():
            self.message_user(request, f"Choose a valid {form.fields[field].label} from the list.",
                              messages.ERROR)  # fmt: skip
            return None
        value = form.cleaned_data.get(field) or ""
        if not value:
            self.message_user(request, f"Choose a {form.fields[field].label} in the action bar "
                              "first; nothing was changed.", messages.ERROR)  # fmt: skip
            return None
        return value

    @admin.action(description="Confirm the model's category and level", permissions=["change"])
    def confirm_selected(self, request, queryset) -> None:
        self._decide_each(request, queryset, Decision(confirm=True), "Confirmed")

    @admin.action(description="Set the category (chosen in the bar)", permissions=["change"])
    def set_category(self, request, queryset) -> None:
        category = self._action_value(request, "category")
        if category:
            self._decide_each(request, queryset, Decision(category=category),
                              f"Category set to {category}")  # fmt: skip

    @admin.action(description="Set the level (chosen in the bar)", permissions=["change"])
    def set_priority(self, request, queryset) -> None:
        level = self._action_value(request, "priority")
        if level:
            self._decide_each(request, queryset, Decision(priority=level), f"Level set to {level}")

    @admin.action(description="Mark done", permissions=["change"])
    def mark_done(self, request, queryset) -> None:
        self._decide_each(request, queryset, Decision(done=True), "Marked done")

    @admin.action(description="Assign (to the assignee chosen in the bar)", permissions=["change"])
    def assign_selected(self, request, queryset) -> None:
        who = self._action_value(request, "assignee")
        if not who:
            return
        if who == "me":
            assignee, words = request.user, f"Assigned to {request.user.get_username()}"
        elif who == "nobody":
            assignee, words = None, "Unassigned"
        else:
            assignee = reviewers().get(**{get_user_model().USERNAME_FIELD: who})
            words = f"Assigned to {who}"
        self._decide_each(request, queryset, Decision(assignee=assignee), words)

    @admin.action(description="Re-run the triage chain", permissions=["change"])
    def rerun_selected(self, request, queryset) -> None:
        ids, left_alone = self.selected(request, queryset)
        queued, busy = rerun_reviewed(ids, user=request.user)
        left_alone += [f"Message {message_id} is still being processed, or was refused at ingest "
                       "as not mail." for message_id in busy]  # fmt: skip
        self.report(request, len(queued), "Queued for a new run of the chain", left_alone)

    # The message page.

    def get_message(self, request: HttpRequest, object_id: str) -> Message | None:
        queryset = self.get_queryset(request).defer(None).defer("raw").select_related("assignee")
        try:
            return queryset.get(pk=int(unquote(object_id)))
        except (Message.DoesNotExist, ValueError, TypeError):
            return None

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None):
        message = self.get_message(request, object_id)
        if message is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, message):
            raise PermissionDenied
        parsed, parse_note = workbench.load_parsed(message)
        no_draft_reason = workbench.no_draft_reason(message, parsed)
        offers_draft = not no_draft_reason
        form_args = {"message": message, "user": request.user, "offers_draft": offers_draft}
        if request.method == "POST":
            if not self.has_change_permission(request, message):
                raise PermissionDenied
            form = ReviewForm(request.POST, **form_args)
            response = self.review(request, message, form)
            if response is not None:
                return with_csp(response)
        else:
            form = ReviewForm(**form_args)
        context = self.message_context(request, message, parsed, parse_note, form)
        context.update(no_draft_reason=no_draft_reason, offers_draft=offers_draft)
        context.update(extra_context or {})
        request.current_app = self.admin_site.name
        return with_csp(TemplateResponse(request, "review/message_page.html", context))

    def review(self, request: HttpRequest, message: Message, form: ReviewForm):
        """Apply the page's POST; a redirect back to the page when done, None to show the page
        again with what the reviewer typed and the error."""
        action = request.POST.get("action", "")
        if action not in PAGE_ACTIONS:
            messages.error(request, "Choose what to do with one of the buttons.")
            return None
        if not form.is_valid():
            for field, errors in form.errors.items():
                messages.error(request, f"{field}: {' '.join(errors)}")
            return None
        try:
            decision = decision_from(form, message, action)
            if changes_anything(decision):
                feedback = record_feedback(message.id, decision, user=request.user)
                messages.success(request, f"Saved: {feedback.action}.")
            elif action != "rerun":
                messages.info(request, "Nothing to save: nothing was changed.")
        except ReviewError as exc:
            messages.error(request, exc.message)
            return None
        except Message.DoesNotExist:
            messages.error(request, f"Message {message.id} is no longer stored.")
            return None
        if action == "rerun":
            queued, _ = rerun_reviewed([message.id], user=request.user)
            if queued:
                messages.success(request, "Queued for a new run of the chain.")
            else:
                messages.warning(request, "Not re-run: the chain is still working on this "
                                 "message, or it was refused at ingest as not mail.")  # fmt: skip
        return HttpResponseRedirect(request.path)

    def message_context(self, request, message: Message, parsed, parse_note: str, form) -> dict:
        opts = self.opts
        sender = workbench.sender_words(message, parsed)
        thread = []
        if message.thread_key:
            thread = (
                Message.objects.filter(thread_key=message.thread_key)
                .exclude(id=message.id)
                .defer("raw", "parsed")
                .order_by("received_at", "id")[:100]
            )
        draft_result = message.draft_result or {}
        raw_json = {
            "category_result": message.category_result,
            "priority_result": message.priority_result,
            "draft_result": message.draft_result,
            "sender_result": message.sender_result,
            "steps": message.steps,
        }
        return {
            **self.admin_site.each_context(request),
            "opts": opts,
            "app_label": opts.app_label,
            "title": message.subject or "(no subject)",
            "subtitle": None,
            "message": message,
            "original": message,
            "has_view_permission": self.has_view_permission(request, message),
            "has_change_permission": self.has_change_permission(request, message),
            "has_delete_permission": self.has_delete_permission(request, message),
            "reviewable": message.status in REVIEWABLE,
            "parsed": parsed,
            "parse_note": parse_note,
            "headers": workbench.shown_headers(parsed, sender) if parsed else [],
            "attachments": workbench.attachment_rows(parsed) if parsed else [],
            "badge": workbench.trust_badge(message),
            "category": workbench.category_words(message),
            "priority": workbench.priority_words(message),
            "sender": sender,
            "steps": workbench.step_words(message.steps or {}),
            "draft_source": DRAFT_SOURCES.get(draft_result.get("source", ""), ""),
            "draft_origin": draft_result.get("origin", ""),
            "thread": thread,
            "feedback": Feedback.objects.filter(message_id=message.id)
            .select_related("user", "api_key", "assignee")
            .order_by("created_at", "id"),
            "form": form,
            "raw_json": json.dumps(raw_json, indent=2, ensure_ascii=False, default=str),
            "age": workbench.age_in_words(message.received_at, timezone.now()),
            "media": self.media,
        }

    def history_view(self, request, object_id, extra_context=None):
        return with_csp(super().history_view(request, object_id, extra_context))

    def delete_view(self, request, object_id, extra_context=None):
        return with_csp(super().delete_view(request, object_id, extra_context))


def shareable_query(params: QueryDict) -> QueryDict:
    """The queue's query string without what belongs to one visit (the page, the error flag)."""
    query = params.copy()
    for name in (PAGE_VAR, ERROR_FLAG):
        query.pop(name, None)
    return query
