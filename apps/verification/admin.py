from django.contrib import admin, messages

from apps.verification import jobs
from apps.verification.models import JobStatus, MailEvidence, VerificationJob, VerificationResult


@admin.register(VerificationResult)
class VerificationResultAdmin(admin.ModelAdmin):
    list_display = ["checked_at", "address", "verdict", "reason", "message_id", "duration_ms"]
    list_filter = ["verdict", "reason"]
    search_fields = ["address", "domain"]
    show_full_result_count = False
    readonly_fields = [f.name for f in VerificationResult._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(MailEvidence)
class MailEvidenceAdmin(admin.ModelAdmin):
    """Read-only: evidence is recorded by the triage chain and expires with retention."""

    list_display = ["seen_at", "address", "kind", "detail", "message_id"]
    list_filter = ["kind"]
    search_fields = ["address"]
    show_full_result_count = False
    readonly_fields = [f.name for f in MailEvidence._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(VerificationJob)
class VerificationJobAdmin(admin.ModelAdmin):
    """Bulk jobs made through the API: their progress and counts, and a way to cancel one."""

    list_display = ["created_at", "id", "status", "progress", "total", "unique", "source",
                    "created_by", "finished_at"]  # fmt: skip
    list_filter = ["status", "source"]
    search_fields = ["id", "created_by"]
    readonly_fields = [*(f.name for f in VerificationJob._meta.fields), "progress", "counts"]
    actions = ["cancel"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="progress")
    def progress(self, job: VerificationJob) -> str:
        progress = jobs.summary(job)["progress"]
        return f"{progress['done']:,} / {progress['total']:,} ({progress['percent']:g}%)"

    @admin.display(description="rows by verdict")
    def counts(self, job: VerificationJob) -> str:
        return ", ".join(f"{verdict} {n:,}" for verdict, n in jobs.counts(job).items())

    @admin.action(description="Cancel the selected jobs")
    def cancel(self, request, queryset) -> None:
        cancelled, over = 0, []
        for job in queryset:
            try:
                jobs.end_job(job.id, JobStatus.CANCELLED)
                cancelled += 1
            except jobs.JobError:
                over.append(str(job.id))
        self.message_user(request, f"Cancelled {cancelled} job(s).", messages.SUCCESS)
        if over:
            self.message_user(request, f"Already over, left as they were: {', '.join(over)}.",
                              messages.WARNING)  # fmt: skip
