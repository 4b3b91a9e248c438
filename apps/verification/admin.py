from django.contrib import admin

from apps.verification.models import VerificationResult


@admin.register(VerificationResult)
class VerificationResultAdmin(admin.ModelAdmin):
    list_display = ["checked_at", "address", "verdict", "reason", "message_id", "duration_ms"]
    list_filter = ["verdict", "reason"]
    search_fields = ["address", "domain"]
    show_full_result_count = False
    readonly_fields = [f.name for f in VerificationResult._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
