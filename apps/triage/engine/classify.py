"""classify: header rules where they are certain, then the spam head, then a category head
trained on the taxonomy's descriptions and examples."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

from apps.inbox.engine import ParsedMessage
from apps.inbox.engine.quotes import forwarded_message
from apps.triage.engine.hashing import CHAR_NGRAMS
from apps.triage.engine.learning import Learned
from apps.triage.engine.priority import VULNERABILITY_SUBJECT
from apps.triage.engine.rules import header_category
from apps.triage.engine.spam import SpamDocument, SpamHead
from apps.triage.engine.taxonomy import Taxonomy

SPAM_THRESHOLD = 0.5
# Below this spam probability a message called spam goes to a person first: a wanted newsletter
# or a receipt lost to the spam folder costs more than a look.
SPAM_SURE = 0.9
# Languages the encoder was trained on. In another language, a category decision less sure than
# LANGUAGE_SURE goes to a person with the reason "language": the models misread what they cannot
# read.
KNOWN_LANGUAGES = frozenset({"en"})
# Languages the spam head learned business mail and its imitations in (the labelled set and the
# written examples). In them spam is judged as in English; holding it back to SPAM_SURE sent
# imitations of invoices and changed bank details to billing instead. In any other language
# (Finnish, Japanese, ...) a spam call still needs SPAM_SURE: unfamiliar words look odd to the
# head, and business mail must not be lost.
SPAM_LANGUAGES = frozenset({"en", "de", "fr", "es", "it", "pt", "nl"})
LANGUAGE_SURE = 0.6
# Auto-Submitted says that a machine sent a message, not what it is about: receipts, invoices
# and remittance advice are billing, a sign-in alert is security. Where the category head is
# this sure of one of these for such mail, it decides. (List-Unsubscribe is left to its rule:
# a payment company's newsletter reads like billing.)
AUTOMATED_BUT_ACTIONABLE = frozenset({"billing", "security", "account"})
# A tool relays what a person wrote as automatic mail: a survey's answer and its comment, a web
# form's submission ("Contact sales", "Contact form"), a tracker's or a chat's copy of a customer's
# report. The words are what the person asks, whoever sent them; where the head is less sure than
# AUTOMATED_SURE of it, the mail is the notification its headers say.
RELAYED_BY_A_MACHINE = frozenset({"feedback", "sales", "support", "incident"})
# A survey tool announces each answer in its subject ("New NPS response: 6 from …", "New response
# to "Customer survey" (score 9)", "Nieuwe reactie: NPS 6"): the customer's score and words,
# relayed, are feedback however the head reads the tool's wrapping. Both marks are needed: a
# help desk's "New response on ticket #4411" is a notification, and so is the tool's own
# "Survey closed: …".
_SURVEY = re.compile(
    r"\b(nps|survey|score|promoter|passive|detractor|recommend|\d+ ?/ ?10|enqu[êe]te|umfrage|"
    r"encuesta|sondaggio|pesquisa|inqu[êe]rito)\b",
    re.I,
)
_ANSWER = re.compile(
    r"\b(response|answer|r[ée]ponse|antwort|respuesta|risposta|resposta|reactie|respons)\b", re.I
)


def announces_a_survey_answer(subject: str) -> str | None:
    """The answer's mark in the subject of a survey tool's mail announcing one, or None."""
    survey, answer = _SURVEY.search(subject), _ANSWER.search(subject)
    return f"{answer.group(0)}, {survey.group(0)}" if survey and answer else None


# List headers say that mail went to a list, not that it is a newsletter: code hosts, trackers
# and monitoring send their notifications with List-Unsubscribe too.
LISTED_BUT_NOT_NEWSLETTER = frozenset({"notification"})
# What the head may decide (at AUTOMATED_SURE) where a bulk header rule names a category.
HEAD_MAY_DECIDE = {
    "notification": AUTOMATED_BUT_ACTIONABLE | RELAYED_BY_A_MACHINE,
    "newsletter": LISTED_BUT_NOT_NEWSLETTER,
}
AUTOMATED_SURE = 0.5
# A subject that names the message a suggestion ("Feature request: scheduled replies",
# "Vorschlag: Urlaubsvertretung", "Sugestão: …") says what it is better than its body, which
# reads like a question about the product (support) or its price (sales). The head's certainty
# that it is a person's own mail carries over.
SUGGESTION_SUBJECT = re.compile(
    r"^((re|aw|antw|sv|r|rv|ref|fwd?|wg|tr|enc|doorst)\s*:\s*)*(?P<name>(feature|product) "
    r"(idea|request|suggestion|wish)|suggestions?|idea|idee|idée|vorschlag|verbesserungsvorschlag|"
    r"anregung|feature-?wunsch|sugest[ãa]o|sugerencia|suggerimento|suggestie|verbetervoorstel|"
    r"id[ée]e d'am[ée]lioration)\s*[:\-–]",
    re.I,
)
# The categories a subject naming a suggestion overrides: the ones its body is mistaken for.
A_SUGGESTION_IS_NOT = frozenset({"support", "sales", "other", "incident"})
# A subject that names a vulnerability (priority.VULNERABILITY_SUBJECT) says that a report of a
# flaw follows; its body, which tells how to reach something (a link, a download, a login), reads
# like a support question in a language the encoder does not know. Every such subject in the
# labelled set is security, the scanners' unsolicited "findings" among them.
A_VULNERABILITY_REPORT_IS_NOT = frozenset({"support", "incident", "account", "feedback", "other"})
# What a subject may say a message is, over the head: (pattern, category, what it overrides).
SUBJECT_NAMES = (
    (SUGGESTION_SUBJECT, "feedback", A_SUGGESTION_IS_NOT),
    (VULNERABILITY_SUBJECT, "security", A_VULNERABILITY_REPORT_IS_NOT),
)

# A labelled real message counts as much as a taxonomy example (cross-validated on the tune part,
# weighing labelled mail 2 or 4 times as much gained nothing).
EXAMPLE_WEIGHT = 1.0
_words = HashingVectorizer(n_features=2**16, alternate_sign=False, ngram_range=(1, 2), norm="l2")
# Character n-grams (hashing.CHAR_NGRAMS, 3 to 5 inside words) carry what word forms share
# across languages and spellings (factura, fattura, facture; Passwort, password), which an English
# encoder does not see.
# Weights of the blocks beside the embedding, chosen by cross-validation on the tune part. With
# 3,000 examples, words and n-grams weighed more than when there were a few hundred, so that the
# embedding counts less beside them, read 0.8 points more of the tune part right and three more
# of a round of 200 messages nobody had tuned on (docs/benchmarks.md).
WORDS_WEIGHT = 2.0
CHARS_WEIGHT = 4.0


@dataclass
class CategoryDecision:
    label: str
    confidence: float
    decided_by: str
    alternatives: list[tuple[str, float]]
    spam_probability: float | None = None
    # Why a person should look at this decision before anyone relies on it, or None.
    review: str | None = None

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "decided_by": self.decided_by,
            "alternatives": [{"label": n, "confidence": round(p, 4)} for n, p in self.alternatives],
            "spam_probability": None
            if self.spam_probability is None
            else round(self.spam_probability, 4),
            "review": self.review,
        }


def category_text(message: ParsedMessage) -> str:
    """What the category head reads: the subject and what this message adds. A forward adds the
    message it forwards: "FYI, see below" says little, the customer's mail below it says what
    it is about."""
    text = f"{message.subject}\n{message.new_text or message.text}"
    forwarded = forwarded_message(message.quoted_text or "") if message.new_text else None
    if forwarded is not None:
        text += "\n" + forwarded
    return text[:4000]


def _linear_model() -> LinearSVC:
    # A linear SVM fits the ~1,400 examples in about a second where multinomial logistic
    # regression took 15 to 20 (a refit follows every taxonomy change), and cross-validated
    # on the tune part it was as accurate; the temperature below makes its margins probabilities.
    return LinearSVC(C=0.3)


class CategoryHead:
    """A linear model over embeddings, hashed words and character n-grams, with a temperature
    fitted on cross-validated margins so that confidences mean what they say."""

    def __init__(self, taxonomy: Taxonomy, encoder=None, learned: Learned | None = None,
                 examples=None, temperature: float | None = None) -> None:  # fmt: skip
        """temperature: one already fitted on the same taxonomy and examples, kept rather than
        fitted again (three more fits) when only reviewers' corrections changed."""
        self.encoder = encoder
        texts, labels = [], []
        for category in taxonomy.categories:
            if category.name == "spam":
                continue  # the spam head decides spam
            for text in (category.description, *category.examples):
                texts.append(text)
                labels.append(category.name)
        weights = [1.0] * len(texts)
        matrix = self.features(texts, None)
        # Labelled real mail (examples.CategoryExamples), for the categories this taxonomy has.
        examples = examples.only(set(labels)) if examples is not None else None
        if examples:
            matrix = sp.vstack([matrix, self.features(examples.texts, examples.vectors)])
            labels += examples.labels
            weights += [EXAMPLE_WEIGHT] * len(examples)
        # Reviewers' corrections to categories the head knows, with the embeddings kept when
        # they were learned (the encoder does not run again for them).
        corrections = [
            c for c in (learned.category_corrections if learned else [])
            if c.category in set(labels)
        ]  # fmt: skip
        if corrections:
            vectors = None
            if self.encoder is not None and all(c.vector is not None for c in corrections):
                vectors = np.vstack([c.vector for c in corrections])
            matrix = sp.vstack([matrix, self.features([c.text for c in corrections], vectors)])
            labels += [c.category for c in corrections]
            weights += [c.weight for c in corrections]
        self.labels = np.array(labels)
        self.weights = np.array(weights)
        self.model = _linear_model()
        self.model.fit(matrix, self.labels, sample_weight=self.weights)
        self.classes = list(self.model.classes_)
        self.temperature = temperature if temperature else self._fit_temperature(matrix)
        self._last_read: tuple | None = None

    def features(self, texts: list[str], embeddings: np.ndarray | None):
        """What the head reads of each text: the embedding, words and character n-grams."""
        chars = normalize(CHAR_NGRAMS.transform(texts))
        blocks = [_words.transform(texts) * WORDS_WEIGHT, chars * CHARS_WEIGHT]
        if self.encoder is None:
            return sp.hstack(blocks).tocsr()
        if embeddings is None:
            embeddings = self.encoder.encode(texts).vectors
        return sp.hstack([sp.csr_matrix(embeddings), *blocks]).tocsr()

    def _fit_temperature(self, matrix) -> float:
        folds = min(3, min(np.unique(self.labels, return_counts=True)[1]))
        if folds < 2:
            return 1.0
        scores = cross_val_predict(
            _linear_model(), matrix, self.labels,
            cv=StratifiedKFold(folds, shuffle=True, random_state=0), method="decision_function",
            params={"sample_weight": self.weights},
        )  # fmt: skip
        truth = np.array([self.classes.index(label) for label in self.labels])
        return temperature_for(scores, truth)

    def predict(self, texts: list[str], embeddings: np.ndarray | None) -> np.ndarray:
        matrix = self.read(texts, embeddings)
        self._last_read = (texts, embeddings, matrix)
        return softmax(self.model.decision_function(matrix) / self.temperature)

    def read(self, texts: list[str], embeddings: np.ndarray | None):
        """features(), where the batch last classified is not read again: the level head reads
        the same texts with the same embeddings right after (hashing them costs some 0.4 ms a
        message, a few percent of triage's time beside the encoder)."""
        last = self._last_read
        if last is not None and last[1] is embeddings and last[0] == texts:
            return last[2]
        return self.features(texts, embeddings)


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def temperature_for(scores: np.ndarray, truth: np.ndarray) -> float:
    """The temperature that makes softmax(scores / temperature) the likeliest reading of the
    true classes (indices into the score columns): cross-validated margins in, probabilities
    that mean what they say out."""
    best, best_loss = 1.0, float("inf")
    for temperature in np.geomspace(0.02, 5.0, 60):  # SVM margins are small: sharpen too
        probabilities = softmax(scores / temperature)
        loss = -np.log(probabilities[np.arange(len(truth)), truth] + 1e-12).mean()
        if loss < best_loss:
            best, best_loss = float(temperature), loss
    return best


@dataclass(frozen=True)
class SenderLists:
    """Senders a team has decided about: allowed ones are never spam, denied ones always are.
    Each entry is an address or a whole domain, lower case."""

    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()

    def match(self, address: str | None) -> tuple[str, str] | None:
        address = (address or "").lower()
        if not address:
            return None
        domain = address.rsplit("@", 1)[-1]
        for kind, entries in (("deny", self.deny), ("allow", self.allow)):
            for candidate in (address, domain):
                if candidate in entries:
                    return kind, candidate
        return None


def _besides(alternatives: list[tuple[str, float]], label: str) -> list[tuple[str, float]]:
    """The next two alternatives to a decision for label, which is no alternative to itself."""
    return [a for a in alternatives if a[0] != label][:2]


class Classifier:
    def __init__(self, taxonomy: Taxonomy, spam_head: SpamHead, encoder=None, *,
                 learned: Learned | None = None, senders: SenderLists | None = None,
                 examples=None, head: CategoryHead | None = None) -> None:  # fmt: skip
        """head: a category head already fitted on this taxonomy, these corrections and examples
        (a change to sender lists alone needs no refit)."""
        self.taxonomy = taxonomy
        self.spam_head = spam_head
        self.encoder = encoder
        self.learned = learned or Learned()
        self.senders = senders or SenderLists()
        self.head = head or CategoryHead(taxonomy, encoder, self.learned, examples)
        mode = "encoder" if encoder is not None else "fallback"
        self.version = (
            f"{mode}:{encoder.version if encoder else 'hashed-words'}"
            f"+taxonomy:{taxonomy.version}@{taxonomy.digest}+{spam_head.version}"
            f"+model:{self.learned.version}" + (f"+examples:{len(examples)}" if examples else "")
        )
        self.model_signal = "encoder" if encoder is not None else "fallback"
        self.known_languages = KNOWN_LANGUAGES

    def classify(self, messages: list[ParsedMessage], embeddings: np.ndarray | None,
                 spam_documents: list[SpamDocument]) -> list[CategoryDecision]:  # fmt: skip
        spam_p = self.spam_head.predict_proba(spam_documents, embeddings)
        probabilities = self.head.predict([category_text(m) for m in messages], embeddings)
        decisions = []
        for i, message in enumerate(messages):
            ranked = sorted(
                zip(self.head.classes, probabilities[i], strict=True), key=lambda x: -x[1]
            )
            alternatives = [(name, float(p)) for name, p in ranked[:3]]
            listed = self.senders.match(message.from_address)
            if listed and listed[0] == "deny" and "spam" in self.taxonomy:
                decisions.append(CategoryDecision("spam", 1.0, f"deny list: {listed[1]}",
                                                  alternatives, float(spam_p[i])))  # fmt: skip
                continue
            rule = header_category(message, "before_spam")
            if rule:
                decisions.append(CategoryDecision(rule[0], 1.0, f"headers: {rule[1]}", alternatives,
                                                  float(spam_p[i])))  # fmt: skip
                continue
            near = self.learned.nearest_category(embeddings[i] if embeddings is not None else None)
            if near and near.value in self.taxonomy:
                decisions.append(CategoryDecision(
                    near.value, near.similarity,
                    f"reviewed: like a message a reviewer filed as {near.value} "
                    f"(similarity {near.similarity:.2f}, model {self.learned.version})",
                    _besides(alternatives, near.value), float(spam_p[i]),
                ))  # fmt: skip
                continue
            foreign = bool(message.language) and message.language not in self.known_languages
            if listed and listed[0] == "allow":
                pass  # an allowed sender is never spam: straight to the category head
            elif spam_p[i] >= SPAM_THRESHOLD and (
                spam_p[i] >= SPAM_SURE or not message.language or message.language in SPAM_LANGUAGES
            ):
                review = "uncertain spam" if spam_p[i] < SPAM_SURE else None
                decisions.append(CategoryDecision("spam", float(spam_p[i]), "spam_head", alternatives,
                                                  float(spam_p[i]), review))  # fmt: skip
                continue
            # Past the spam head, every decision is as sure as the message is not spam: bulk
            # headers say how mail was sent, not that it is wanted (a loan offer in German with
            # Precedence: bulk, held back from spam for its language, is no sure newsletter).
            # An allowed sender's mail is not doubted for looking like spam.
            not_spam = 1.0 if listed else 1 - float(spam_p[i])
            label, confidence = ranked[0]
            decided_by, others = self.model_signal, alternatives[1:]
            rule = header_category(message, "after_spam")
            if rule and label in HEAD_MAY_DECIDE.get(rule[0], ()) and confidence >= AUTOMATED_SURE:
                decided_by = f"{self.model_signal}, automated mail: {rule[1]}"
            elif (rule and rule[0] == "notification" and "feedback" in self.taxonomy
                  and (answer := announces_a_survey_answer(message.subject))):  # fmt: skip
                label, confidence = "feedback", 1.0
                others = _besides(alternatives, "feedback")
                decided_by = f"headers: {rule[1]}, subject: a survey answer ({answer})"
            elif rule:
                label, confidence, others = rule[0], 1.0, alternatives
                decided_by = f"headers: {rule[1]}"
            elif listed:
                decided_by = f"{self.model_signal}, allow list: {listed[1]}"
            for pattern, named_label, overridden in () if rule else SUBJECT_NAMES:
                if (
                    label in overridden
                    and named_label in self.taxonomy
                    and (named := pattern.search(message.subject))
                ):
                    label, others = named_label, _besides(alternatives, named_label)
                    decided_by = f"{decided_by}, subject: {named.group('name').strip()}"
                    break
            confidence = float(confidence) * not_spam
            review = "language" if foreign and confidence < LANGUAGE_SURE else None
            decisions.append(CategoryDecision(label, confidence, decided_by, others,
                                              float(spam_p[i]), review))  # fmt: skip
        return decisions
