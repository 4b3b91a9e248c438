"""Address syntax from RFC 5321/5322, RFC 6531 (SMTPUTF8) and IDNA 2008 / UTS 46."""

import email_validator
import pytest

from apps.verification.engine.syntax import MAX_INPUT_LENGTH, check_syntax

VALID = [
    # RFC 5322 3.4.1 dot-atom local parts.
    "simple@example.com",
    "very.common@example.com",
    "disposable.style.email.with+symbol@example.com",
    "other.email-with-hyphen@example.com",
    "fully-qualified-domain@example.com",
    "user.name+tag+sorting@example.com",
    "x@example.com",
    "example-indeed@strange-example.com",
    "admin@mailserver1.example.org",
    "example@s.example",
    "mailhost!username@example.org",
    "user%example.com@example.org",
    "user-@example.org",
    "_underscore@example.com",
    "a_b@example.com",
    "1234567890@example.com",
    "!#$%&'*+-/=?^_`{|}~@example.com",
    "first.last@sub.do.main.example.com",
    "UPPER@EXAMPLE.COM",
    "MiXeD.CaSe@Example.Com",
    "o'reilly@example.com",
    "a.b.c.d.e@example.com",
    "test@xn--mnchen-3ya.de",
    "user@a-b.c-d.example.com",
    "user@1example.com",
    "user@example.co.uk",
    "user@example.museum",
    "user@example.technology",
    "a@b.co",
    "t@123.example.com",
    # RFC 5321 4.5.3.1: 64-octet local part, 63-octet labels.
    "a" * 64 + "@example.com",
    "user@" + "a" * 63 + ".com",
    "user@" + ".".join(["a" * 60] * 3) + ".com",
    # Internationalised domains (IDNA 2008 / UTS 46).
    "user@münchen.de",
    "user@bücher.example",
    "user@例え.jp",
    "user@пример.рф",
    "user@ουτοπία.δπθ.gr",
    "user@xn--fsqu00a.xn--0zwm56d",
    "user@MÜNCHEN.DE",
    # RFC 6531: UTF-8 local parts (need SMTPUTF8).
    "用户@例子.广告",
    "δοκιμή@παράδειγμα.δοκιμή",
    "我買@屋企.香港",
    "二ノ宮@黒川.日本",
    "медведь@с-балалайкой.рф",
    "संपर्क@डाटामेल.भारत",
    "josé@example.com",
    "zoë@example.com",
    "müller@example.de",
    "ñandú@example.es",
    # Leading and trailing whitespace is trimmed, as people paste it.
    "  padded@example.com  ",
    "tabbed@example.com\t",
]

INVALID = [
    "",
    " ",
    "plainaddress",
    "@example.com",
    "user@",
    "user@@example.com",
    "user@example@com",
    "Abc.example.com",
    "A@b@c@example.com",
    ".leadingdot@example.com",
    "trailingdot.@example.com",
    "double..dot@example.com",
    "user@.example.com",
    "user@example..com",
    "user@example.com.",
    "user@-example.com",
    "user@example-.com",
    "user@exa_mple.com",
    "user name@example.com",
    "user@exam ple.com",
    'just"not"right@example.com',
    'this is"not\\allowed@example.com',
    'this\\ still\\"not\\\\allowed@example.com',
    'a"b(c)d,e:f;g<h>i[j\\k]l@example.com',
    "user@localhost",
    "user@example",
    "user@[not-an-ip]",
    "i_like_underscore@but_its_not_allowed_in_this_part.example.com",
    "QA[icon]CHOCOLATE[icon]@test.com",
    "user@example.com (comment)",
    "<user@example.com>",
    "User <user@example.com>",
    "user@exam\u200bple.com",  # zero-width space
    "user\x00@example.com",
    "user\r\n@example.com",
    "user@example.com\nBcc: victim@example.com",
    "user\x7f@example.com",
    "user\udcff@example.com",  # an undecodable byte carried as a surrogate
    "a" * 65 + "@example.com",
    "user@" + "a" * 64 + ".com",
    "a@" + ".".join(["b" * 63] * 4) + ".com",
    "x" * 10_000,
    "x" * 5_000 + "@" + "y" * 5_000 + ".com",
    "user@invalid",
    "user@example.invalid",
    "user@foo.localhost",
    "user@xn--.com",
    "user@xn--zz-zzzz.com",
    "user@☃",
    "user@.",
    "@",
    "user@123",
    "user@example.123",  # an all-numeric top-level domain
    '"quoted"@example.com',  # quoted local parts are refused unless configured
    "user@[192.0.2.1]",  # address literals are refused unless configured
    "user@[IPv6:2001:db8::1]",
]


@pytest.mark.parametrize("address", VALID)
def test_valid_addresses(address):
    result = check_syntax(address)
    assert result.valid, result.error
    assert result.normalized and "@" in result.normalized
    assert result.error is None


@pytest.mark.parametrize("address", INVALID)
def test_invalid_addresses(address):
    result = check_syntax(address)
    assert not result.valid
    assert result.error  # says what was wrong


def test_there_are_at_least_a_hundred_cases():
    assert len(VALID) + len(INVALID) >= 100


def test_normalisation_lowercases_the_domain_but_keeps_the_local_part():
    result = check_syntax("John.Smith@EXAMPLE.COM")
    assert result.normalized == "John.Smith@example.com"
    assert result.domain == "example.com"


def test_idn_domain_is_kept_in_unicode_and_ascii():
    result = check_syntax("user@München.de")
    assert result.domain == "münchen.de"
    assert result.ascii_domain == "xn--mnchen-3ya.de"
    assert result.smtputf8 is False  # an ASCII local part needs no SMTPUTF8


def test_utf8_local_part_sets_the_smtputf8_flag():
    result = check_syntax("用户@例子.广告")
    assert result.smtputf8 is True
    assert result.ascii_domain == "xn--fsqu00a.xn--4rr70v"


def test_quoted_local_part_accepted_when_configured():
    assert check_syntax('"john doe"@example.com', allow_quoted_local=True).valid
    assert not check_syntax('"john doe"@example.com').valid


def test_address_literals_accepted_when_configured():
    result = check_syntax("user@[192.0.2.1]", allow_domain_literal=True)
    assert result.valid
    assert result.ascii_domain == "[192.0.2.1]"
    assert check_syntax("user@[IPv6:2001:db8::1]", allow_domain_literal=True).valid


def test_overlong_input_is_refused_before_parsing_with_its_length():
    result = check_syntax("x" * 10_000)
    assert "10000 characters" in result.error


def test_special_use_domains_only_for_test_farms():
    assert not check_syntax("user@mail.test").valid
    assert check_syntax("user@mail.test", allow_special_use_domains=True).valid


def test_non_text_input_is_refused():
    assert not check_syntax(None).valid  # type: ignore[arg-type]


LONG_LABELS = ".".join(["a" * 63] * 3) + ".com"  # 195 characters: long addresses reach 254


BEFORE_THE_VALIDATOR = [  # refused by check_syntax's own checks, with errors of its own
    "",
    " ",
    "user\x00@example.com",
    "user\r\n@example.com",
    "user@example.com\nBcc: victim@example.com",
    "user\x7f@example.com",
    "user\udcff@example.com",
]


@pytest.mark.parametrize(
    "address",
    [a for a in VALID + INVALID if a not in BEFORE_THE_VALIDATOR and len(a) <= MAX_INPUT_LENGTH]
    + [
        "Postmaster@Example.com",  # the validator lowercases these mailbox names
        "Support@EXAMPLE.COM",
        "user@München.de",
        "user@example.com.",
        "a" * 58 + "@" + LONG_LABELS,  # 254 characters
        "a" * 59 + "@" + LONG_LABELS,  # 255
        "user@mail.test",
    ],
)
def test_a_domain_judged_once_gives_the_validators_own_answer(address):
    """Addresses at a domain already seen skip the domain's second judgement: the answer, error
    included, must be what the validator gives for the whole address."""
    domain = address.rpartition("@")[2]
    check_syntax(f"warm.up@{domain}")  # the domain is now judged
    ours = check_syntax(address)
    try:
        theirs = email_validator.validate_email(
            address.strip(), check_deliverability=False, strict=True, allow_smtputf8=True
        )
    except email_validator.EmailNotValidError as exc:
        assert (ours.valid, ours.error) == (False, str(exc))
        return
    assert ours.valid, ours.error
    assert ours.normalized == theirs.normalized
    assert ours.local_part == theirs.local_part
    assert ours.domain == theirs.domain.lower()
    assert ours.ascii_domain == (theirs.ascii_domain or theirs.domain).lower()
    assert ours.smtputf8 == theirs.smtputf8
