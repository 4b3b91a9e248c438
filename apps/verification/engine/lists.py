"""Domain and local-part lists: disposable, free and role addresses, and the operator's own lists."""

from __future__ import annotations

import os
import time
from importlib import resources
from pathlib import Path

import disposable_email_domains

# Local parts that name a function rather than a person (RFC 2142 and common practice).
ROLE_LOCAL_PARTS = frozenset(
    [
        "abuse",
        "admin",
        "administrator",
        "accounts",
        "accounting",
        "billing",
        "careers",
        "contact",
        "customerservice",
        "customer-service",
        "devnull",
        "dns",
        "enquiries",
        "ftp",
        "help",
        "helpdesk",
        "hostmaster",
        "hr",
        "info",
        "inquiries",
        "it",
        "jobs",
        "legal",
        "list",
        "mail",
        "mailer-daemon",
        "marketing",
        "media",
        "news",
        "newsletter",
        "no-reply",
        "noreply",
        "do-not-reply",
        "donotreply",
        "notifications",
        "office",
        "orders",
        "postmaster",
        "press",
        "privacy",
        "sales",
        "security",
        "service",
        "support",
        "sysadmin",
        "team",
        "usenet",
        "uucp",
        "webmaster",
        "www",
    ]
)


def _load_domain_file(path: Path) -> frozenset[str]:
    domains = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0].strip().lower()
        if line:
            domains.add(line)
    return frozenset(domains)


def _packaged_free_providers() -> frozenset[str]:
    data = resources.files("apps.verification.engine").joinpath("data/free_providers.txt")
    with resources.as_file(data) as path:
        return _load_domain_file(path)


FREE_PROVIDERS = _packaged_free_providers()


def _domain_and_parents(domain: str) -> list[str]:
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


class DomainLists:
    """Answers list questions about an address; the operator's extra disposable file is re-read
    when it changes, so the list can be refreshed without a restart."""

    RELOAD_CHECK_SECONDS = 30.0

    def __init__(
        self,
        *,
        disposable_extra_file: str = "",
        allow_domains: tuple[str, ...] = (),
        deny_domains: tuple[str, ...] = (),
        allow_addresses: tuple[str, ...] = (),
        deny_addresses: tuple[str, ...] = (),
    ) -> None:
        self._packaged_disposable = frozenset(disposable_email_domains.blocklist)
        self._extra_path = Path(disposable_extra_file) if disposable_extra_file else None
        self._extra_disposable: frozenset[str] = frozenset()
        self._extra_mtime: float | None = None
        self._last_check = 0.0
        self.allow_domains = frozenset(d.lower() for d in allow_domains)
        self.deny_domains = frozenset(d.lower() for d in deny_domains)
        self.allow_addresses = frozenset(a.lower() for a in allow_addresses)
        self.deny_addresses = frozenset(a.lower() for a in deny_addresses)
        self._reload_extra(force=True)

    def _reload_extra(self, force: bool = False) -> None:
        if self._extra_path is None:
            return
        now = time.monotonic()
        if not force and now - self._last_check < self.RELOAD_CHECK_SECONDS:
            return
        self._last_check = now
        try:
            mtime = os.stat(self._extra_path).st_mtime
        except OSError:
            self._extra_disposable, self._extra_mtime = frozenset(), None
            return
        if mtime != self._extra_mtime:
            self._extra_disposable = _load_domain_file(self._extra_path)
            self._extra_mtime = mtime

    @property
    def disposable_count(self) -> int:
        return len(self._packaged_disposable | self._extra_disposable)

    def is_disposable(self, domain: str) -> bool:
        self._reload_extra()
        return any(
            d in self._packaged_disposable or d in self._extra_disposable
            for d in _domain_and_parents(domain)
        )

    @staticmethod
    def is_free(domain: str) -> bool:
        return domain in FREE_PROVIDERS

    @staticmethod
    def is_role(local_part: str) -> bool:
        base = local_part.lower().split("+", 1)[0]
        return base in ROLE_LOCAL_PARTS

    def is_allowed(self, address: str, domain: str) -> bool:
        return address.lower() in self.allow_addresses or any(
            d in self.allow_domains for d in _domain_and_parents(domain)
        )

    def is_denied(self, address: str, domain: str) -> bool:
        return address.lower() in self.deny_addresses or any(
            d in self.deny_domains for d in _domain_and_parents(domain)
        )
