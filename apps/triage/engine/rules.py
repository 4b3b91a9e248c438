"""Header signals that decide a category with certainty, before any model is asked."""

from __future__ import annotations

import re

from apps.inbox.engine import ParsedMessage

_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[ -]?(reply|response)|autoreply|"
    r"abwesenheitsnotiz|réponse automatique|respuesta automática|on vacation|away from)\b",
    re.I,
)
# Delivery failures and delays as mail servers word them, Exchange's translated "Undeliverable:"
# prefixes among them (German, French, Spanish, Italian, Dutch, Portuguese).
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|non-?deliver|delivery status notification|delivery failure|failure notice|"
    r"returned mail|mail delivery (failed|system)|message not delivered|delivery has failed|"
    r"(was not|wasn't|could not be|couldn't be|cannot be|can't be) delivered|"
    r"delivery (delayed|failed)|delayed mail|address not found|"
    r"unzustellbar|non remis|no se puede entregar|non recapit|onbestelbaar|"
    r"não é possível entregar)",
    re.I,
)
_DAEMON_SENDER = re.compile(r"^(mailer-daemon|mail-daemon)@", re.I)
_BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon)@", re.I)


def _from_the_mail_system(message: ParsedMessage) -> bool:
    """Automatic mail (Auto-Submitted) from a mail server's daemon: it sends nothing but delivery
    reports, whatever the subject. Anyone can write MAILER-DAEMON in a From line, so the
    Auto-Submitted mark is asked for too; mail that carries it is already taken as automatic
    before the spam head, so this trusts nothing new. A postmaster is a person's role and may
    write about anything."""
    automatic = message.auto_submitted not in ("", "no")
    return automatic and bool(_DAEMON_SENDER.match(message.from_address or ""))


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
        if _from_the_mail_system(message):
            return "bounce", f"automatic mail from {sender}"
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
