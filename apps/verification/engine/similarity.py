"""Domain similarity: typo suggestions for addresses and lookalike detection for senders."""

from __future__ import annotations

import functools
import json
import unicodedata
from importlib.resources import files

import idna

# Domains people mistype most; a suggestion is offered only towards one of these.
COMMON_DOMAINS = (
    "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com",
    "icloud.com", "aol.com", "msn.com", "protonmail.com", "proton.me", "gmx.com", "gmx.de",
    "web.de", "yandex.ru", "mail.ru", "comcast.net", "verizon.net", "att.net", "me.com",
    "yahoo.co.uk", "hotmail.co.uk", "btinternet.com", "orange.fr", "free.fr", "t-online.de",
)  # fmt: skip

# Brands that phishing imitates most; the operator's own domains are always added to these.
WELL_KNOWN_DOMAINS = (
    "paypal.com", "google.com", "gmail.com", "microsoft.com", "outlook.com", "office.com",
    "apple.com", "icloud.com", "amazon.com", "facebook.com", "linkedin.com", "dropbox.com",
    "docusign.com", "netflix.com", "github.com", "stripe.com", "salesforce.com", "zoom.us",
    "chase.com", "wellsfargo.com", "bankofamerica.com", "dhl.com", "fedex.com", "ups.com",
)  # fmt: skip

# Characters and sequences that read alike in most fonts, mapped to the letter they imitate.
# Unicode's confusables (its security mechanisms' table, through confusable_homoglyphs) are folded
# after NFKD; these are what it leaves out: digits, and Cyrillic and Greek letters that pass for
# Latin ones in lowercase ("aмazon" with a Cyrillic м).
_CONFUSABLE_CHARS = {
    "0": "o", "1": "l", "3": "e", "5": "s", "|": "l",
    "к": "k", "м": "m", "т": "t", "в": "b", "н": "h", "τ": "t", "ε": "e", "κ": "k",
}  # fmt: skip
_CONFUSABLE_SEQUENCES = (("rn", "m"), ("vv", "w"), ("cl", "d"), ("l", "i"))

# Big mail providers whose names are one letter from another's (mail.com and gmail.com): mail
# from them is not imitating anyone.
GENUINE_PROVIDERS = ("mail.com", "email.com", "gmx.com", "gmx.net", "ymail.com", "mail.ru")


@functools.cache
def _unicode_confusables() -> dict[str, str]:
    """Every single character Unicode lists as looking like a lowercase ASCII letter or digit,
    mapped to that letter or digit (Cyrillic "а" to "a", palochka "ӏ" to "l")."""
    # Read from the package's data file rather than its module, which keeps all of Unicode's
    # table (about 10 MB) in every process that imports it.
    data = json.loads((files("confusable_homoglyphs") / "confusables.json").read_text("utf-8"))
    table: dict[str, str] = {}
    for latin in "abcdefghijklmnopqrstuvwxyz0123456789":
        for entry in data.get(latin, ()):
            # Right-to-left characters come wrapped in LEFT-TO-RIGHT MARKs.
            glyph = entry["c"].strip("\u200e")
            if len(glyph) == 1 and not glyph.isascii():
                table.setdefault(glyph, latin)
    return table


def damerau_levenshtein(a: str, b: str) -> int:
    """Edit distance counting insertions, deletions, substitutions and adjacent swaps."""
    previous_previous: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            cost = 0 if char_a == char_b else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous_previous[j - 2] + 1)
        previous_previous, previous = previous, current
    return previous[len(b)]


def to_unicode(domain: str) -> str:
    try:
        return idna.decode(domain)
    except idna.IDNAError:
        return domain.lower()


@functools.lru_cache(maxsize=65536)
def skeleton(domain: str) -> str:
    """A form in which lookalike spellings of a domain collapse to the same string."""
    decomposed = unicodedata.normalize("NFKD", to_unicode(domain).lower())
    unicode_table = _unicode_confusables()
    folded = "".join(
        _CONFUSABLE_CHARS.get(ch) or unicode_table.get(ch, ch)
        for ch in decomposed
        if not unicodedata.combining(ch)
    )
    for sequence, replacement in _CONFUSABLE_SEQUENCES:
        folded = folded.replace(sequence, replacement)
    return folded


@functools.lru_cache(maxsize=65536)
def suggest_domain(domain: str) -> str | None:
    """The common domain this one is most likely a typo of, or None. Bulk lists repeat domains
    many times over, hence the cache."""
    domain = domain.lower()
    if domain in COMMON_DOMAINS:
        return None
    best, best_distance = None, 3
    for candidate in COMMON_DOMAINS:
        # Short domains need a closer match: "aol.co" is a typo, "aa.com" is a company.
        allowed = 1 if len(candidate) <= 7 else 2
        if abs(len(domain) - len(candidate)) > allowed:
            continue  # the distance is at least the difference in length
        distance = damerau_levenshtein(domain, candidate)
        if distance <= allowed and distance < best_distance:
            best, best_distance = candidate, distance
    return best


@functools.lru_cache(maxsize=65536)
def lookalike_of(domain: str, protected: tuple[str, ...]) -> tuple[str, str] | None:
    """(protected domain, how) when domain imitates one without being it or a subdomain of it.
    Cached: every message is checked, and senders' domains repeat."""
    domain = domain.lower().rstrip(".")
    if domain in GENUINE_PROVIDERS or domain in COMMON_DOMAINS:
        return None
    own_skeleton = skeleton(domain)
    for target in protected:
        target = target.lower()
        if domain == target or domain.endswith("." + target):
            return None
    for target in protected:
        target = target.lower()
        if own_skeleton == skeleton(target):
            return target, "confusable_characters"
        close_in_length = abs(len(domain) - len(target)) <= 1
        if len(target) >= 6 and close_in_length and damerau_levenshtein(domain, target) == 1:
            return target, "one_edit_away"
        # "paypal-secure.com": the brand as one hyphen-separated part of the first label.
        brand = skeleton(target.split(".")[0])
        label_parts = own_skeleton.split(".")[0].split("-")
        if len(brand) >= 4 and len(label_parts) > 1 and brand in label_parts:
            return target, "contains_brand"
        # "paypal.com.secure-login.net": the whole brand domain in front of another one.
        if f".{skeleton(target)}." in f".{own_skeleton}":
            return target, "contains_brand"
    return None
