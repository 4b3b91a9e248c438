"""The MIME parser on crafted edge cases and on every message of the real corpus."""

import hashlib
from pathlib import Path

import pytest

from apps.inbox.engine import MessageTooLarge, UnparseableMessage, parse_envelope, parse_message
from apps.inbox.engine.quotes import split_reply


def test_every_corpus_message_parses(spam_corpus):
    files = [p for p in sorted(spam_corpus.rglob("*")) if p.is_file() and p.name != "README.md"]
    assert len(files) > 4000
    with_text = 0
    for path in files:
        message = parse_message(path.read_bytes())
        with_text += bool(message.text)
    assert with_text / len(files) > 0.97


def envelopes_both_ways(raw: bytes, monkeypatch) -> tuple:
    """parse_envelope's answer (or error) with its own header reader, and with the feed parser
    reading every section."""
    from apps.inbox.engine import parser

    def outcome():
        try:
            return parse_envelope(raw)
        except UnparseableMessage as exc:
            return str(exc)

    own = outcome()
    with monkeypatch.context() as patched:
        patched.setattr(parser, "_envelope_fields", lambda section, limits: None)
        return own, outcome()


def test_the_envelope_reader_reads_real_mail_as_the_feed_parser_does(spam_corpus, monkeypatch):
    """Every corpus message (mbox "From " lines, Received chains, 8-bit headers, folded and
    duplicated fields), the business set and the demo mailbox: the same envelope both ways."""
    from apps.inbox.engine import parser
    from apps.inbox.engine.mailbox import iter_messages

    samples = Path(__file__).resolve().parents[2] / "samples"
    files = [p for p in sorted(spam_corpus.rglob("*")) if p.is_file() and p.name != "README.md"]
    raws = [path.read_bytes() for path in files]
    raws += [path.read_bytes() for path in sorted((samples / "business").rglob("*.eml"))]
    raws += [item.raw for item in iter_messages([samples / "demo.mbox"]) if item.raw]
    assert len(raws) > 7000
    read_here = 0
    for raw in raws:
        own, fed = envelopes_both_ways(raw, monkeypatch)
        assert own == fed, raw[:2000]
        section = parser._header_section(raw)
        read_here += parser._envelope_fields(section, parser.DEFAULT_LIMITS) is not None
    assert read_here / len(raws) > 0.99


@pytest.mark.parametrize(
    "head",
    [
        b"Subject: one\r\nSubject: two\r\nFrom: a@example.com\r\n",
        b"Subject: folded\r\n over\r\n\tthree lines\r\nFrom: x <a@example.com>\r\n",
        b" leading continuation\r\nSubject: s\r\n",
        b"Subject: s\rMessage-ID: <bare-cr@example.com>\r\n",
        b"From nobody Mon Jan  1 00:00:00 2026\nFrom another line\nSubject: s\n",
        b"Subject: s\r\nnot a header line\r\nFrom: after@example.com\r\n",
        b"Subject : spaced name\r\nFrom: a@example.com\r\n",
        b"SUBJECT: upper\r\nmessage-id: <lower@example.com>\r\nDate: Fri, 04 Dec 2026 10:00:00 +0100\r\n",
        b"Subject: \xe4\xf6 raw 8-bit\r\nContent-Type: text/plain; charset=iso-8859-1\r\n",
        b"Content-Type: text/plain;" + b" a=b;" * 40 + b" charset=utf-8\r\nSubject: s\r\n",
        b"Subject: nul \x00 in it\r\nFrom: \r\n",
        b"X-Empty:\r\n:no name\r\nSubject: s\r\n",
        b"",
    ],
)
def test_the_envelope_reader_on_odd_header_sections(head, monkeypatch):
    for raw in (head, head + b"\r\nbody\r\n", head + b"\n\nbody\n"):
        own, fed = envelopes_both_ways(raw, monkeypatch)
        assert own == fed


def test_encoded_headers_and_addresses():
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.com>\r\n"
        b'Reply-To: help@example.org\r\nTo: a@example.com, "B" <b@example.com>\r\n'
        b"Cc: c@example.com\r\nSubject: =?iso-8859-1?q?R=E9sum=E9?= ready\r\n"
        b"Date: Tue, 03 Mar 2026 10:00:00 +0100\r\nMessage-ID: <abc@example.com>\r\n"
        b"In-Reply-To: <prev@example.com>\r\nReferences: <first@example.com> <prev@example.com>\r\n\r\nHello there, how are you today?\r\n"
    )
    message = parse_message(raw)
    assert message.from_name == "Jürgen Müller" and message.from_address == "jm@example.com"
    assert message.subject == "Résumé ready"
    assert message.to == ["a@example.com", "b@example.com"] and message.cc == ["c@example.com"]
    assert message.reply_to == ["help@example.org"]
    assert message.date.isoformat() == "2026-03-03T10:00:00+01:00"
    assert message.message_id == "<abc@example.com>" and message.in_reply_to == "<prev@example.com>"
    assert message.references == ["<first@example.com>", "<prev@example.com>"]


def test_wrong_and_unknown_charsets_decode_with_replacement():
    wrong = b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\xe9 cr\xe8me\r\n"
    assert "caf" in parse_message(wrong).text
    unknown = (
        b"Subject: x\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nna\xefve\r\n"
    )
    assert parse_message(unknown).text.startswith("na")


JAPANESE = "ご注文ありがとうございます。新しい商品のお知らせです。来週までにお返事ください。"
CHINESE = "您還在用百分之二十的信用卡循環嗎？改善掉髮，預防禿頭的最佳選擇。"
KOREAN = "요즘 뜨는 직종 다섯 가지와 자격증 따기 열풍에 대한 안내입니다."


def test_undeclared_charset_in_a_non_latin_script_is_found():
    # Japanese mailers of the time sent Shift_JIS without saying so.
    raw = b"Subject: x\r\nContent-Type: text/plain\r\n\r\n" + JAPANESE.encode("shift_jis")
    message = parse_message(raw)
    assert message.text == JAPANESE and message.language == "ja"


def test_html_read_in_the_charset_of_its_own_meta_even_with_a_bad_byte():
    html = '<html><head><meta http-equiv="Content-Type" content="text/html; charset=big5"></head>'
    body = html.encode() + b"<body><p>" + CHINESE.encode("big5") + b"\xff\xff</p></body></html>"
    raw = b"Subject: x\r\nContent-Type: text/html; charset=chinesebig5\r\n\r\n" + body
    message = parse_message(raw)
    assert CHINESE in message.text and message.language == "zh"


def test_raw_header_bytes_read_in_the_bodys_charset():
    subject = "[광고] 자격증 따기 열풍"
    raw = (b"From: " + "홍길동".encode("euc_kr") + b" <ad@example.kr>\r\nSubject: "
           + subject.encode("euc_kr") + b"\r\nContent-Type: text/html; charset=ks_c_5601-1987"
           b"\r\n\r\n<p>" + KOREAN.encode("euc_kr") + b"</p>")  # fmt: skip
    message = parse_message(raw)
    assert message.subject == subject and message.from_name == "홍길동"
    assert KOREAN in message.text
    assert parse_envelope(raw).subject == subject
    # The envelope reads only the header section: a charset declared by a part below counts too
    # (a guess from a short subject alone read this Big5 as Shift_JIS).
    big5 = "改善掉髮，預防禿頭的最佳選擇"
    multipart = (b"Subject: " + big5.encode("big5") + b"\r\nContent-Type: multipart/alternative;"
                 b" boundary=B\r\n\r\n--B\r\nContent-Type: text/plain; charset=big5\r\n\r\n"
                 + CHINESE.encode("big5") + b"\r\n--B--\r\n")  # fmt: skip
    assert parse_envelope(multipart).subject == parse_message(multipart).subject == big5
    # With no charset declared anywhere, the body's found charset reads the subject too.
    undeclared = b"Subject: " + "信用卡循環".encode("big5") + b"\r\n\r\n" + CHINESE.encode("big5")
    assert parse_message(undeclared).subject == "信用卡循環"


def test_latin_mail_reads_as_windows_1252():
    # Labelled ISO-8859-1 but written in Windows-1252: curly quotes, not invisible controls.
    labelled = b"Subject: x\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n\x93IBXG\x94 \x96 caf\xe9"
    assert parse_message(labelled).text == "\u201cIBXG\u201d \u2013 café"
    # Undeclared Western text is not guessed into another code page.
    undeclared = b"Subject: Caf\xe9 cr\xe8me\r\n\r\nLa cr\xe8me br\xfbl\xe9e du caf\xe9 \xe9tait tr\xe8s bonne, merci \xe0 vous."
    message = parse_message(undeclared)
    assert message.subject == "Café crème"
    assert message.text == "La crème brûlée du café était très bonne, merci à vous."


def test_8_bit_text_labelled_us_ascii_reads_as_what_it_was_written_in():
    # US-ASCII is many mailers' default label, whatever the bytes: it names no charset for them.
    labelled = b"Subject: x\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    western = labelled + b"Anybody\x92s deal \x96 C\xf4te d'Ivoire"
    assert parse_message(western).text == "Anybody\u2019s deal \u2013 Côte d'Ivoire"
    assert parse_message(labelled + "Pádraig’s note".encode()).text == "Pádraig’s note"
    assert parse_message(labelled + CHINESE.encode("big5")).text == CHINESE
    # The same label in an HTML part's own <meta> says no more.
    html = (b'Subject: x\r\nContent-Type: text/html\r\n\r\n<html><head><meta charset="us-ascii">'
            b"</head><body><p>Anybody\x92s deal</p></body></html>")  # fmt: skip
    assert parse_message(html).text == "Anybody\u2019s deal"


def test_html_only_mail_becomes_readable_text():
    raw = (b"Subject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<html><head><style>p{color:red}</style></head><body><p>Hello <b>World</b></p>"
           b"<script>alert(1)</script><p>Second&nbsp;line</p></body></html>")  # fmt: skip
    message = parse_message(raw)
    assert message.html_only
    assert message.text == "Hello World\n\nSecond line" or message.text.split() == [
        "Hello",
        "World",
        "Second",
        "line",
    ]
    assert "alert" not in message.text and "color" not in message.text


def test_multipart_attachments_and_nested_message():
    raw = (
        b"Subject: report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b'--XX\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename="a.zip"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nUEsDBAo=\r\n"
        b"--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n"
        b"--XX--\r\n"
    )
    message = parse_message(raw)
    assert message.text == "See attached."
    archive, nested = message.attachments
    assert (archive.filename, archive.content_type, archive.size) == ("a.zip", "application/zip", 5)
    assert archive.sha256 == hashlib.sha256(b"PK\x03\x04\n").hexdigest()
    assert nested.content_type == "message/rfc822" and nested.size > 0


@pytest.mark.parametrize(
    ("text_part", "filename_bytes", "filename"),
    [
        # Apple Mail wrote UTF-8 file names raw (the Ruby mail library's fixture
        # attachment_nonascii_filename.eml); RFC 6532 allows it.
        (b"Content-Type: text/plain; charset=ISO-8859-1\r\n\r\nSee attached.\r\n",
         "ciële.txt".encode(), "ciële.txt"),
        # An older mailer's own code page, the one its text part declares.
        (b"Content-Type: text/plain; charset=ISO-8859-1\r\n\r\nCi-joint le pr\xe9avis.\r\n",
         "Préavis résiliation.pdf".encode("latin-1"), "Préavis résiliation.pdf"),
        (b"Content-Type: text/plain; charset=Shift_JIS\r\n\r\n" + "添付します。".encode("shift_jis") + b"\r\n",
         "見積書.pdf".encode("shift_jis"), "見積書.pdf"),
    ],
)  # fmt: skip
def test_a_raw_file_name_reads_as_the_message_is_written(text_part, filename_bytes, filename):
    raw = (
        b"Subject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\n" + text_part
        + b"--XX\r\nContent-Type: application/octet-stream; name=" + filename_bytes + b"\r\n"
        b"Content-Disposition: attachment;\r\n\tfilename=\"" + filename_bytes + b"\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nUEsDBAo=\r\n--XX--\r\n"
    )  # fmt: skip
    [attachment] = parse_message(raw).attachments
    assert attachment.filename == filename
    assert attachment.size == 5


def test_raw_file_names_in_utf_8_and_a_code_page_in_one_message():
    def part(name: bytes) -> bytes:
        return (b"--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
                b'filename="' + name + b'"\r\n\r\nx\r\n')  # fmt: skip

    raw = (
        b"Subject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        + part("Résumé.pdf".encode()) + part("Reçu n°12.pdf".encode("cp1252"))
        + part("Größe.pdf".encode()) + b"--XX--\r\n"
    )  # fmt: skip
    names = [attachment.filename for attachment in parse_message(raw).attachments]
    assert names == ["Résumé.pdf", "Reçu n°12.pdf", "Größe.pdf"]


def test_an_invitations_calendar_data_is_an_attachment_not_its_text():
    # As calendar services send invitations: the calendar data is one of the alternatives.
    raw = (
        b"Subject: Invitation: Q4 review\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=OUT\r\n\r\n"
        b"--OUT\r\nContent-Type: multipart/alternative; boundary=ALT\r\n\r\n"
        b"--ALT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYou are invited to Q4 review.\r\n"
        b"--ALT\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n"
        b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nSUMMARY:Q4 review\r\n"
        b"END:VEVENT\r\nEND:VCALENDAR\r\n"
        b"--ALT--\r\n"
        b'--OUT\r\nContent-Type: application/ics; name="invite.ics"\r\n'
        b'Content-Disposition: attachment; filename="invite.ics"\r\n\r\nBEGIN:VCALENDAR\r\n'
        b"--OUT--\r\n"
    )
    message = parse_message(raw)
    assert message.text == "You are invited to Q4 review."
    assert "VCALENDAR" not in message.new_text
    assert [a.content_type for a in message.attachments] == ["text/calendar", "application/ics"]


def test_broken_base64_and_garbage_do_not_raise():
    raw = b"Subject: x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64***\r\n"
    parse_message(raw)
    parse_message(b"\x00\xff\xfe garbage without headers")
    parse_message(b"")


def test_size_limit():
    with pytest.raises(MessageTooLarge, match="up to 100 bytes") as refused:
        parse_message(b"Subject: x\r\n\r\n" + b"a" * 200, max_bytes=100)
    assert isinstance(refused.value, UnparseableMessage)


def test_language():
    raw = (
        "Subject: x\n\nBonjour, nous avons un problème avec la facture du mois dernier.\n".encode()
    )
    assert parse_message(raw).language == "fr"


def test_delivery_report_flag():
    raw = (b"Subject: failed\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n--B--\r\n")  # fmt: skip
    assert parse_message(raw).is_delivery_report


def test_top_posted_reply_splits_history_and_signature():
    text = ("Thanks, the fix works.\n\nBest regards,\nJane Doe\nACME Corp\n\n"
            "On Tue, 3 Mar 2026 at 10:00, Support <support@example.com> wrote:\n> Please try again.\n")  # fmt: skip
    split = split_reply(text)
    assert split.new_text == "Thanks, the fix works."
    assert split.sign_off_name == "Jane Doe"
    assert "Please try again" in split.quoted


def test_outlook_style_history_and_dash_signature():
    text = ("Can you check again?\n-- \nJoe\n555-1234\n\nFrom: Support\nSent: Monday\n"
            "To: Joe\nSubject: RE: issue\n\nWe looked into it.\n")  # fmt: skip
    split = split_reply(text)
    assert split.new_text == "Can you check again?"
    assert split.signature.startswith("--") and "We looked into it." in split.quoted


def test_interleaved_answers_are_kept():
    text = "On Mon, Bob wrote:\n> Does it work?\nYes, since this morning.\n> And the export?\nStill broken.\n"
    split = split_reply(text)
    assert split.new_text.split("\n") == ["Yes, since this morning.", "Still broken."]


def test_attribution_wrapped_over_two_lines_above_quotes():
    text = ("Works for me.\n\nOn Tue, 3 Mar 2026 at 10:00, Support Team <support@example.com>\n"
            "wrote:\n> Can you confirm?\n")  # fmt: skip
    split = split_reply(text)
    assert split.new_text == "Works for me."
    assert split.quoted.startswith("On Tue") and "Can you confirm?" in split.quoted


@pytest.mark.parametrize(
    "header",
    [
        "Op di 3 mrt 2026 om 10:00 schreef Support <support@example.com>:",
        "Em ter., 3 de mar. de 2026 às 10:00, Suporte <s@example.com> escreveu:",
        "Den 3 mars 2026 kl. 10:00 skrev Support <support@example.com>:",
        "Da: Supporto <s@example.com>",
    ],
)
def test_history_headers_in_other_languages(header):
    outlook_rest = "Inviato: martedì 3 marzo 2026 10:00\nA: Marco\nOggetto: fattura\n"
    text = f"Ok, grazie.\n\n{header}\n{outlook_rest if header.startswith('Da:') else ''}> Ciao\n"
    split = split_reply(text)
    assert split.new_text == "Ok, grazie."
    assert "Ciao" in split.quoted


def test_a_bare_attribution_above_quotes_is_history():
    # As 2002's list mail writes it (SpamAssassin's easy-ham): a name, "wrote:", quotes.
    text = ("Martin Adamson wrote:\n>\n> Isn't it just basically a mixture of beaten egg and bacon?\n\n"
            "You're probably right, mine's just the same.\n")  # fmt: skip
    split = split_reply(text)
    assert split.new_text == "You're probably right, mine's just the same."
    # Without quotes below it, the same words are the writer's own.
    assert split_reply("My colleague wrote:\nthe export is fine now.").new_text.startswith("My")


def test_corporate_signature_with_a_legal_notice():
    text = ("Hello,\n\nCould you share Enterprise pricing for 400 seats?\n\nKind regards,\n"
            "Katherine Mills\nHead of Customer Tooling\nHalcyon Bank plc\n"
            "Halcyon Bank plc is authorised by the Prudential Regulation Authority and regulated by "
            "the Financial Conduct Authority. This email and any attachments are confidential.\n")  # fmt: skip
    split = split_reply(text)
    assert split.new_text == "Hello,\n\nCould you share Enterprise pricing for 400 seats?"
    assert split.sign_off_name == "Katherine Mills" and "confidential" in split.signature


@pytest.mark.parametrize(
    "sign_off",
    [
        "Com os melhores cumprimentos,",
        "Um abraço,",
        "Un abrazo enorme,",
        "Quedo atento, muchas gracias.",
        "Muchas gracias de antemano,",
        "Merci d'avance,",
        "Bonne journée,",
        "Vielen Dank und freundliche Grüße",
        "Schöne Grüße aus München",
        "Un caro saluto e a presto,",
        "Met vriendelijke groet / Kind regards,",
        "Groetjes,",
    ],
)
def test_sign_offs_in_the_languages_of_our_mail(sign_off):
    text = f"Could you look at the invoice, please?\n\n{sign_off}\nInês Carvalho\nLusomar, Lda.\n"
    split = split_reply(text)
    assert split.new_text == "Could you look at the invoice, please?"
    assert split.signature.startswith(sign_off) and split.sign_off_name == "Inês Carvalho"


@pytest.mark.parametrize(
    ("text", "new_text"),
    [
        # The sign-off is all there is: it is the message.
        ("Obrigado, resolvido.\n", "Obrigado, resolvido."),
        # A question or a postscript under the name is still the message.
        ("The export fails.\n\nThanks,\nBob\nCan you also check the March invoice?\n", None),
        ("The export fails.\n\nThanks,\nBob\nPS: the March invoice is wrong too.\n", None),
        # A sentence under "Thanks for ..." is not a signer's name.
        ("Hi,\nThanks for the quick reply.\nI tried again and it still fails.\n", None),
        # A link's query is not a question.
        ("Our offers end Sunday.\n\nCordiali saluti,\nLo Staff di Aruba.it\n"
         "https://mkt.aruba.it/unsubscribe?c=BF26\n", "Our offers end Sunday."),
    ],
)  # fmt: skip
def test_what_is_not_a_signature(text, new_text):
    assert split_reply(text).new_text == (new_text or text.strip())


@pytest.mark.parametrize(
    ("text", "new_text", "history", "signature"),
    [
        # Gmail's attributions in Chinese, Japanese and Korean, above quoted lines.
        ("好的，我们今天下午会再试一次。\n\n王伟 <wangwei@example.cn> 于2026年12月3日周四 "
         "上午10:00写道：\n> 请把错误日志发给我们。\n", "好的，我们今天下午会再试一次。", "写道", ""),
        ("承知しました。本日中にログを送ります。\n\n2026年12月3日(木) 10:00 Support "
         "<support@brightdesk.io>:\n> ログを送ってください。\n", "承知しました。本日中にログを送ります。",
         "2026年12月3日", ""),
        ("확인했습니다. 오늘 로그를 보내드리겠습니다.\n\n2026년 12월 3일 (목) 오전 10:00, Support "
         "<support@brightdesk.io>님이 작성:\n> 로그를 보내주세요.\n", "확인했습니다. 오늘 로그를 보내드리겠습니다.",
         "님이 작성", ""),
        # Outlook's block above a message quoted without ">".
        ("承知しました。\n\n差出人: Support <support@brightdesk.io>\n送信日時: 2026年12月3日 10:00\n"
         "宛先: 田中 <tanaka@example.jp>\n件名: RE: ログイン\n\nログを送ってください。\n", "承知しました。",
         "ログを送ってください。", ""),
        ("好的，明白了。\n\n发件人: Support <support@brightdesk.io>\n发送时间: 2026年12月3日 10:00\n"
         "收件人: 王伟 <wangwei@example.cn>\n主题: 回复: 账户\n\n请把错误日志发给我们。\n", "好的，明白了。",
         "请把错误日志发给我们。", ""),
        # Sign-offs, with the name and company below them.
        ("承知しました。本日中にログを送ります。\n\nよろしくお願いいたします。\n田中\n",
         "承知しました。本日中にログを送ります。", "", "よろしくお願いいたします。\n田中"),
        ("我们的账户被锁定了，请尽快处理。\n\n谢谢！\n王伟\n北京某某科技有限公司\n",
         "我们的账户被锁定了，请尽快处理。", "", "谢谢！\n王伟\n北京某某科技有限公司"),
        ("로그인이 안 됩니다. 확인 부탁드립니다.\n\n감사합니다.\n홍길동\n", "로그인이 안 됩니다. 확인 부탁드립니다.",
         "", "감사합니다.\n홍길동"),
        # The sign-off is all there is: it is the message.
        ("谢谢！\n", "谢谢！", "", ""),
        # Thanks with a sentence after it on its line is the message, not a sign-off.
        ("您好，\n\n谢谢！问题已经解决了，我们可以正常使用了。\n",
         "您好，\n\n谢谢！问题已经解决了，我们可以正常使用了。", "", ""),
    ],
)  # fmt: skip
def test_replies_in_chinese_japanese_and_korean(text, new_text, history, signature):
    split = split_reply(text)
    assert split.new_text == new_text and split.signature == signature
    assert history in split.quoted and bool(history) == bool(split.quoted)


def test_a_rule_above_everything_is_layout_not_history():
    text = ("_" * 80 + "\nMicrosoft Teams-Besprechung\nKlicken Sie hier, um teilzunehmen\n"
            + "_" * 80 + "\n")  # fmt: skip
    assert "Microsoft Teams-Besprechung" in split_reply(text).new_text
