"""The four steps together, on the real encoder, the bundled mailbox, fallback mode and a
generator built on the spot."""

import copy
import re

import numpy as np
import pytest

from apps.triage.engine.classify import Classifier
from apps.triage.engine.encoder import Encoder, ModelLoadError
from apps.triage.engine.evaluation import evaluate_triage, load_labelled
from apps.triage.engine.examples import CategoryExamples, load_examples, packaged_vectors_path
from apps.triage.engine.pipeline import TriageConfig, Triager
from apps.triage.engine.spam import spam_document
from apps.triage.engine.taxonomy import Taxonomy
from tests.triage.conftest import SAMPLES, make_message


@pytest.fixture(scope="module")
def labelled():
    return load_labelled(SAMPLES / "demo.mbox", SAMPLES / "demo_labels.csv")


def test_bundled_mailbox_quality_holds(triager, labelled):
    figures = evaluate_triage(triager, labelled)
    # docs/benchmarks.md has the measured figures; these floors catch a regression.
    assert figures["messages"] == 70
    assert figures["category_accuracy"] >= 0.85, figures["mistakes"]
    assert figures["priority_within_one"] >= 0.9, figures["priority_misses"]


def test_every_step_result_and_version_is_there(triager, labelled):
    outcome = triager.triage([labelled[0][0]])[0].to_dict()
    assert set(outcome) >= {
        "category",
        "priority",
        "summary",
        "draft_reply",
        "timings",
        "model_versions",
    }
    assert set(outcome["category"]) >= {"label", "confidence", "decided_by", "alternatives"}
    assert set(outcome["timings"]) == {
        "encode_ms",
        "classify_ms",
        "prioritize_ms",
        "summarize_ms",
        "draft_ms",
    }
    assert outcome["model_versions"]["encoder"].startswith("all-MiniLM-L6-v2@")
    assert 0 < len(outcome["summary"]) <= 300


def test_one_encoder_pass_per_batch(triager, labelled):
    calls = []
    original = triager.encoder.encode

    def counting(texts, spans=None):
        calls.append(len(texts))
        return original(texts, spans)

    triager.encoder.encode = counting
    try:
        triager.triage([item.message for item in labelled[:10]])
    finally:
        del triager.encoder.encode  # the class's method again, not one bound to this encoder
    assert calls == [10]


def test_sentence_vectors_are_the_mean_of_their_tokens_from_the_same_pass(triager, labelled):
    """Each sentence's vector is the normalised mean of the token states inside it, read from the
    message's own pass: checked against one text at a time through the model, with sentences cut
    off by truncation left at zero."""
    import numpy as np
    import torch

    encoder = triager.encoder
    texts = [item.message.text[:600] for item in labelled[:6]]
    texts += ["Short one. Another sentence here.", "", "Repeat this line. " * 400]
    spans = [[(m.start(), m.end()) for m in re.finditer(r"[^.!?]+[.!?]", text)] for text in texts]
    spans[-2] = []
    batched = encoder.encode(texts, spans)
    for text, text_spans, got in zip(texts, spans, batched.sentence_vectors, strict=True):
        assert got.shape == (len(text_spans), encoder.dimension)
        if not text_spans:
            continue
        inputs = encoder.tokenizer(text, truncation=True, max_length=encoder.max_length,
                                   return_tensors="pt", return_offsets_mapping=True)  # fmt: skip
        offsets = inputs.pop("offset_mapping")[0].numpy()
        with torch.inference_mode():
            tokens = encoder.model(**inputs).last_hidden_state[0].numpy()
        real = offsets[:, 1] > offsets[:, 0]
        for (start, end), vector in zip(text_spans, got, strict=True):
            inside = real & (offsets[:, 0] >= start) & (offsets[:, 1] <= end)
            if not inside.any():
                assert not vector.any()
                continue
            expected = tokens[inside].mean(0)
            expected /= np.linalg.norm(expected)
            assert np.abs(vector - expected).max() < 1e-4
    # The long text was cut off: its later sentences have no tokens.
    assert not batched.sentence_vectors[-1][-1].any()


def test_the_examples_are_read_in_full_however_little_of_a_message_is_read(triager):
    # A worker that reads 64 tokens of each message (MAILSCORE_MAX_TOKENS=64) takes the stored
    # embeddings of the examples, instead of encoding all of them again at each start.
    short_reader = copy.copy(triager.encoder)
    short_reader.max_length = 64
    cache = packaged_vectors_path(short_reader)
    examples = load_examples().with_vectors(short_reader, cache)
    with np.load(cache) as stored:
        assert np.array_equal(examples.vectors, stored["vectors"])
    # Where nothing is stored, they are encoded from as many tokens as the stored ones were.
    tokens = short_reader.tokenizer(examples.texts)["input_ids"]
    long = [i for i, ids in enumerate(tokens) if len(ids) > 100][:6]
    assert len(long) == 6
    again = CategoryExamples([examples.texts[i] for i in long], [examples.labels[i] for i in long],
                             [examples.sources[i] for i in long]).with_vectors(short_reader)  # fmt: skip
    assert np.allclose(again.vectors, examples.vectors[long], atol=1e-5)
    cut_short = short_reader.encode(again.texts).vectors
    assert not np.allclose(cut_short, examples.vectors[long], atol=1e-3)


def test_header_signals_decide_where_certain(triager):
    newsletter = make_message(
        "This month in the community: three new plugins, the spring meetup and survey results.",
        subject="March community digest",
        extra="List-Unsubscribe: <mailto:u@x.example>\n",
    )
    bounce = make_message("Could not deliver.", subject="Undelivered Mail Returned to Sender",
                          sender="MAILER-DAEMON@mx.example.com")  # fmt: skip
    auto = make_message("I am away.", extra="Auto-Submitted: auto-replied\n")
    results = triager.triage([newsletter, bounce, auto])
    assert [r.category.label for r in results] == ["newsletter", "bounce", "auto_reply"]
    assert all(r.category.decided_by.startswith("headers:") for r in results)
    assert all(r.draft is None and r.priority.level == "P3" for r in results)


def test_automated_mail_about_money_goes_to_billing_and_the_rest_stays_a_notification(triager):
    automated = "Auto-Submitted: auto-generated\n"
    receipt = make_message(
        "Receipt #2291-6604\n\nAmount paid: EUR 1,188.00\nDate paid: 3 November 2026\n"
        "Payment method: Visa ending in 4242\n\nBrightdesk Team plan, 12 seats, annual.\n"
        "Download your invoice as a PDF from the billing page. Questions about this payment? "
        "Reply to this email.",
        subject="Your receipt from Brightdesk #2291-6604", sender="receipts@stripe.example",
        extra=automated,
    )  # fmt: skip
    build = make_message(
        "Build #4812 of main finished: 312 tests passed in 4 min 12 s.\nView the run: "
        "https://ci.example.com/runs/4812",
        subject="[ci] main: build #4812 passed", sender="ci@ci.example.com", extra=automated,
    )  # fmt: skip
    paid, built = triager.triage([receipt, build])
    assert paid.category.label == "billing", paid.category
    assert paid.category.decided_by.endswith("automated mail: Auto-Submitted: auto-generated")
    assert built.category.label == "notification", built.category
    assert built.category.decided_by == "headers: Auto-Submitted: auto-generated"


def test_a_survey_answer_relayed_by_a_machine_is_feedback(triager):
    # A survey tool sends the customer's words as automatic mail: they are still feedback. Its
    # own notice that a survey closed is a notification.
    automated = "Auto-Submitted: auto-generated\n"
    answer = make_message(
        "New response to \"How likely are you to recommend Brightdesk?\"\n\nScore: 6\n"
        "Respondent: Dana Whitfield, Harbour Lane Dental\n\nComment: The inbox is fine but the "
        "reporting is weak. I cannot see response times per agent without exporting to Excel, "
        "and the mobile app logs me out every few days. Please make the reports more useful.",
        subject="NPS response: 6 - Harbour Lane Dental", sender="responses@surveys.example",
        extra=automated,
    )  # fmt: skip
    closed = make_message(
        "Your survey \"Q4 customer pulse\" closed on 30 November with 214 responses.\n"
        "Download the results: https://surveys.example/s/8812/results",
        subject="Survey closed: Q4 customer pulse", sender="no-reply@surveys.example",
        extra=automated,
    )  # fmt: skip
    # The tool's own wrapping, a score without a comment, reads like any notification; its
    # subject says it is an answer.
    bare = make_message(
        "Pollcraft notification\n\nSurvey: Brightdesk customer NPS (Q4 2026)\nResponse ID: 88213\n"
        "Submitted: 1 Dec 2026 10:42 UTC\nChannel: email\nScore: 3\n\nView response: "
        "https://pollcraft.example/r/88213\nExport all responses: "
        "https://pollcraft.example/s/12/export\n\nYou receive this email because notifications "
        "are on for this survey. Manage notifications: https://pollcraft.example/settings",
        subject="New NPS response: 3 from Harbour Lane Dental", sender="notify@pollcraft.example",
        extra=automated,
    )  # fmt: skip
    relayed, notice, scored = triager.triage([answer, closed, bare])
    assert relayed.category.label == "feedback", relayed.category
    assert relayed.category.decided_by.endswith("automated mail: Auto-Submitted: auto-generated")
    assert notice.category.label == "notification", notice.category
    assert scored.category.label == "feedback", scored.category
    assert "subject: a survey answer (response, NPS)" in scored.category.decided_by
    # A help desk's own notice of a reply says "response" too, and is no survey answer.
    reply = make_message("Agent Tom replied to your ticket #4411.\nView the conversation: "
                         "https://help.vendor.example/t/4411", subject="New response on ticket #4411",
                         sender="no-reply@help.vendor.example", extra=automated)  # fmt: skip
    assert triager.triage([reply])[0].category.label == "notification"


def test_a_persons_words_relayed_by_their_tools_are_what_the_person_asks(triager):
    # A web form's submission and a tracker's copy of a customer's comment come as automatic
    # mail; what they carry is a prospect's purchase and a customer's broken mail. The tools' own
    # notices (an alert, a failed build, a shipment) stay notifications.
    cases = [  # (expected, subject, sender, body)
        ("sales", "New form submission: Contact sales",
         "Formwell <notifications@formwell.example>",
         "New submission from your website\n\nForm: Contact sales\nName: Priya Raman\n"
         "Company: Tidewater Clinics (14 locations)\nEmail: priya.raman@tidewater-clinics.example"
         "\n\nMessage:\nWe are comparing help desks for our patient services team, about 30 "
         "agents. Could you send pricing for the Professional and Enterprise plans and suggest a "
         "time for a demo next week?\n\n--\nSent by Formwell"),
        ("incident", "[Tracker] (SUP-812) Customer emails bouncing from Brightdesk since this morning",
         "Tracker <tracker@bellini-viaggi.example>",
         "Marco Bellini commented on SUP-812:\n\nSince this morning every email our customers "
         "send to help@bellini-viaggi.example bounces back from Brightdesk with '550 mailbox "
         "unavailable'. Nothing reaches our 25 agents and bookings for the weekend are waiting. "
         "Please fix this on your side as soon as possible.\n\nView issue: "
         "https://tracker.example/browse/SUP-812"),
        ("notification", "[FIRING:1] HighErrorRate api-gateway", "Alertmanager <alerts@ops.example>",
         "[FIRING:1] HighErrorRate api-gateway (production)\n\nSummary: 5xx rate above 5% for 10 "
         "minutes\nValue: 7.2%\nStarted: 2026-12-01 03:12 UTC\nRunbook: "
         "https://runbooks.example/api-gateway\nSilence: https://alerts.example/silence/8812"),
        ("notification", "Build failed: main #4412", "CI <ci@ops.example>",
         "Build #4412 of main failed.\n\nStage: test\nFailed job: integration-tests (exit code "
         "1)\nCommit: 9f2c1e3 Update dependencies\n\nSee the log: https://ci.example/builds/4412"),
        ("notification", "Your order has shipped", "Shop <noreply@shop.example>",
         "Your order 88213 has shipped.\nCarrier: DHL Express\nTracking: 1Z999AA10123456784\n"
         "Estimated delivery: Thursday 3 December"),
    ]  # fmt: skip
    results = triager.triage([
        make_message(body, subject=subject, sender=sender, extra="Auto-Submitted: auto-generated\n")
        for _, subject, sender, body in cases
    ])  # fmt: skip
    assert [r.category.label for r in results] == [case[0] for case in cases], [
        r.category for r in results
    ]
    for relayed in results[:2]:
        assert relayed.category.decided_by.endswith(
            "automated mail: Auto-Submitted: auto-generated"
        )


def test_a_subject_that_names_a_suggestion_makes_it_feedback(triager):
    # The body of a suggestion reads like a question about the product; its subject says what
    # it is. Without that subject the same words stay a support question.
    body = ("Hi,\n\nis there a way to export all tickets of one customer to CSV? I cannot find "
            "the option in the settings, and we need it for our monthly reports.\n\nThanks,\nJane")  # fmt: skip
    named = [make_message(body, subject=subject) for subject in (
        "Feature request: CSV export per customer", "Re: Suggestion - CSV export per customer",
        "Vorschlag: CSV-Export pro Kunde", "Sugestão: exportar CSV por cliente",
    )]  # fmt: skip
    plain = make_message(body, subject="CSV export per customer")
    quote = make_message(body, subject="Proposta: CSV export per customer")  # a quote, not an idea
    *suggestions, question, proposal = triager.triage([*named, plain, quote])
    for outcome in suggestions:
        assert outcome.category.label == "feedback", outcome.category
        assert ", subject: " in outcome.category.decided_by
    assert question.category.label == "support", question.category
    assert "subject" not in proposal.category.decided_by


def test_a_subject_that_names_a_vulnerability_makes_it_a_security_report_for_today(triager):
    # A researcher's report tells how to reach something (a link, a file, without a login); in a
    # language the encoder does not know it reads like a support question. Its subject says what
    # it is, and a weakness reported is looked at today.
    body = ("Hallo,\n\nwenn wir den Link zu einem Anhang aus einer Antwort kopieren und in einem "
            "privaten Fenster öffnen, wird die Datei ohne Anmeldung heruntergeladen. Auch nach "
            "einer Woche funktioniert der Link noch. Ist das so gewollt? Könnt ihr das ändern?"
            "\n\nViele Grüße\nJonas Weber")  # fmt: skip
    named = [make_message(body, subject=subject) for subject in (
        "Schwachstelle: Anhänge ohne Anmeldung abrufbar",
        "Kwetsbaarheid: bijlagen zonder inloggen op te vragen",
        "Vulnerabilidade: anexos acessíveis sem login",
    )]  # fmt: skip
    plain = make_message(body, subject="Anhänge ohne Anmeldung")
    for report in triager.triage(named):
        assert report.category.label == "security", report.category
        assert report.priority.level == "P1", report.priority
        assert any(reason.startswith("a weakness reported") for reason in report.priority.reasons)
    # Where the head reads the report as a support question, the subject decides. A head that
    # learned this very text as support, and nothing of vulnerabilities, reads it so whatever
    # the shipped head has learned since (today's reads it as security unaided).
    taxonomy = Taxonomy.from_dict({"categories": [
        {"name": "support", "description": "A customer asks how to do something.",
         "examples": [body, "Wie ändere ich die Farbe des Chat-Widgets?"]},
        {"name": "security", "description": "Phishing seen by users.",
         "examples": ["We received a phishing mail that pretends to be from you."]},
        {"name": "spam", "description": "Unsolicited junk."},
        {"name": "other", "description": "Anything else."},
    ]})  # fmt: skip
    knows_it_as_support = Classifier(taxonomy, triager.spam_head, triager.encoder)
    *decisions, unnamed = knows_it_as_support.classify(
        [*named, plain], triager.encode([*named, plain]).vectors,
        [spam_document(m) for m in (*named, plain)],
    )  # fmt: skip
    assert unnamed.label == "support", unnamed
    for decision, name in zip(decisions, ("Schwachstelle", "Kwetsbaarheid", "Vulnerabilidade"),
                              strict=True):  # fmt: skip
        assert decision.label == "security", decision
        assert decision.decided_by == f"encoder, subject: {name}", decision


def test_list_mail_that_is_a_notification_is_not_called_a_newsletter(triager):
    listed = "List-Unsubscribe: <https://lists.example.com/unsubscribe/8812>\n"
    build = make_message(
        "Run failed: CI - main (a4e91c7)\n\nThe job 'test (3.11)' failed after 4 minutes: "
        "2 tests failed in tests/api/test_export.py.\nView the workflow run: "
        "https://code.example.com/acme/web/actions/runs/8812\n\nYou are receiving this because "
        "you are subscribed to this repository's workflow notifications.",
        subject="[acme/web] Run failed: CI - main (a4e91c7)", sender="notifications@code.example.com",
        extra=listed,
    )  # fmt: skip
    digest = make_message(
        "This month at Acme: three new integrations, our spring webinar series, and a customer "
        "story from Lisbon. Read the full newsletter on our blog. Upcoming events: ...",
        subject="Acme monthly: new integrations and spring webinars", sender="news@acme.example",
        extra=listed,
    )  # fmt: skip
    failed, monthly = triager.triage([build, digest])
    assert failed.category.label == "notification", failed.category
    assert failed.category.decided_by.endswith("automated mail: List-Unsubscribe header")
    assert monthly.category.label == "newsletter", monthly.category
    assert monthly.category.decided_by == "headers: List-Unsubscribe header"


def test_summary_and_draft_use_only_the_new_text(triager):
    message = make_message(
        "Hi,\nThe export to CSV fails with error 42 since this morning. Could you check it?\n\n"
        "Best regards,\nNora Lind\n\nOn Tue, 3 Mar 2026, Support <s@example.com> wrote:\n"
        "> Your invoice was refunded yesterday.\n",
        subject="CSV export fails", sender="Nora Lind <nora@example.com>",
    )  # fmt: skip
    [outcome] = triager.triage([message])
    assert "refunded" not in outcome.summary and "Nora" not in outcome.summary
    assert outcome.draft.text.startswith("Hi Nora,") and "refunded" not in outcome.draft.text


def test_spam_gets_no_draft(triager, labelled):
    spam = [item.message for item in labelled if item.category == "spam"]
    for outcome in triager.triage(spam):
        assert outcome.draft is None


def test_fallback_mode_when_the_encoder_cannot_load(tmp_path, labelled):
    degraded = Triager(TriageConfig(encoder_path=str(tmp_path / "no-model")))
    assert (
        "encoder unavailable" in degraded.degraded
        and str(tmp_path / "no-model") in degraded.degraded
    )
    outcomes = degraded.triage([item.message for item in labelled])
    assert {o.category.decided_by.split(":")[0] for o in outcomes} <= {
        "fallback",
        "headers",
        "spam_head",
    }
    accuracy = sum(
        o.category.label == item.category for o, item in zip(outcomes, labelled, strict=True)
    ) / len(labelled)
    assert accuracy >= 0.6  # rules plus the light model keep mail flowing, less precisely
    with pytest.raises(ModelLoadError, match="No encoder at .*MAILSCORE_ENCODER_PATH"):
        Triager(TriageConfig(encoder_path=str(tmp_path / "no-model"), mode="encoder"))


def test_int8_quantized_encoder():
    quantized = Encoder(device="cpu", quantize=True)
    assert quantized.version.endswith("+int8")
    full = Encoder(device="cpu")
    texts = ["The API is down for all customers.", "Please send the invoice."]
    a, b = quantized.encode(texts).vectors, full.encode(texts).vectors
    assert (a * b).sum(axis=1).min() > 0.9  # close to the full-precision embeddings


def _tiny_seq2seq(directory):
    """A randomly initialised T5 and a word-level tokenizer, saved as a real model directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    words = [
        "the",
        "export",
        "fails",
        "with",
        "error",
        "please",
        "check",
        "it",
        "invoice",
        "order",
        "account",
        "customer",
        "login",
    ]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>")  # fmt: skip
    tokenizer.save_pretrained(directory)
    config = T5Config(vocab_size=len(vocab), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(directory)


def test_generator_loads_from_a_local_path_and_stays_within_limits(tmp_path):
    _tiny_seq2seq(tmp_path / "tiny-t5")
    with_generator = Triager(TriageConfig(generator_path=str(tmp_path / "tiny-t5"), device="cpu"))
    assert with_generator.versions["generator"] == "tiny-t5"
    message = make_message(
        "The export fails with error 42. Please check it.", subject="Export fails"
    )
    [outcome] = with_generator.triage([message])
    assert len(outcome.summary) <= 300
    assert outcome.draft is not None and "refund" not in outcome.draft.text


def test_missing_generator_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="No generator at"):
        Triager(TriageConfig(generator_path=str(tmp_path / "none"), device="cpu"))
