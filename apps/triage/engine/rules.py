"""Header signals that decide a category with certainty, before any model is asked."""

from __future__ import annotations

import re

from apps.inbox.engine import ParsedMessage

_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[ -]?(reply|response)|autoreply|"
    r"abwesenheitsnotiz|réponse automatique|respuesta automática|on vacation|away from)\b",
    re.I,
)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery status notification|delivery failure|failure notice|returned mail|"
    r"mail delivery (failed|system)|message not delivered|delivery has failed)",
    re.I,
)
_BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon)@", re.I)


def header_category(message: ParsedMessage, stage: str) -> tuple[str, str] | None:
    """(category, signal) where headers are certain. stage "before_spam" checks automatic mail
    (bounces and auto-replies come from real servers, whatever they quote); stage "after_spam"
    checks bulk mail, which spam imitates and so must not outrank the spam head."""
    header = message.header
    if stage == "before_spam":
        if message.is_delivery_report:
            return "bounce", "multipart/report delivery-status"
        sender = message.from_address or ""
        if _BOUNCE_SENDER.match(sender) and _BOUNCE_SUBJECT.search(message.subject):
            return "bounce", f"From {sender} with a delivery-failure subject"
        if message.auto_submitted.startswith("auto-replied"):
            return "auto_reply", "Auto-Submitted: auto-replied"
        for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponse"):
            if header(name) is not None:
                return "auto_reply", f"{name} header"
        if (header("Precedence") or "").strip().lower() == "auto_reply":
            return "auto_reply", "Precedence: auto_reply"
        if _AUTO_REPLY_SUBJECT.match(message.subject):
            return "auto_reply", "automatic-reply subject"
        return None
    auto_submitted = message.auto_submitted
    if auto_submitted.startswith("auto-generated") or auto_submitted.startswith("auto-notified"):
        return "notification", f"Auto-Submitted: {auto_submitted}"
    if header("List-Unsubscribe") is not None:
        return "newsletter", "List-Unsubscribe header"
    precedence = (header("Precedence") or "").strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return "newsletter", f"Precedence: {precedence}"
    return None
