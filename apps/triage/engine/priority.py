"""prioritize: a score from 0 to 100, a level from P0 (act now) to P3 (no action needed), and the
reasons that produced it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apps.inbox.engine import ParsedMessage
from apps.triage.engine.deadlines import find_deadlines
from apps.triage.engine.taxonomy import NO_REPLY

CATEGORY_BASE = {
    "incident": 55, "security": 40, "legal": 35, "account": 35, "billing": 30,
    "support": 30, "sales": 25, "feedback": 10, "other": 10,
}  # fmt: skip
LEVELS = ((70, "P0"), (45, "P1"), (20, "P2"), (0, "P3"))

_URGENCY = re.compile(
    r"\b(urgent(ly)?|asap|as soon as possible|immediately|right away|emergency|critical|"
    r"blocker|blocking|time[- ]sensitive|top priority|high priority|escalat\w*|right now)\b",
    re.I,
)
# The whole team stopped, mail no longer arriving: impact, and for an incident, everyone affected.
_EVERYONE_STOPPED = (
    r"(whole|entire) ([a-z-]+ )?(team|company|office|department|staff)|"
    r"no (new |inbound |incoming )?(e-?mails?|mail|tickets|messages|chats) (have |has )?"
    r"(since|arriving|arrived|coming in|come in|for (hours|the last))|"
    r"nothing (has )?(come|coming|came|arrived|arriving) (in|into|through)|"
    r"not (a single|one) (e-?mail|mail|message|ticket) (has )?(come|arrived|reached)"
)
_IMPACT = re.compile(
    r"\b(outage|down|production|prod|all (our )?(users|customers)|every (user|customer)|"
    r"revenue|data loss|losing (money|data|orders|customers)|cannot (log ?in|work|access)|"
    r"breach|compromised|leak(ed)?|not working|stopped working|broken|checkout|black friday|unreachable|"
    r"payments? (are |is )?failing|(nobody|no one) can|all (of )?(our|my) (agents|staff|team|users|customers)|"
    r"(tickets|data|messages|emails|records) (have |has )?(disappeared|vanished|gone missing|deleted)|"
    r"(missing|lost|deleted) (tickets|data|messages|emails|records)|"
    # The server answering with errors.
    r"(http |error |status )50[0234]|50[0234]s|50[0234] errors?|"
    r"bad gateway|gateway time-?out|service unavailable|internal server error|none of us|"
    + _EVERYONE_STOPPED
    + r")\b",
    re.I,
)

# The whole team stopped or mail no longer arriving, in the other languages of our mail: impact,
# and for an incident, everyone affected. ("Bei allen" alone is also "bei allen Fragen".)
_EVERYONE_ELSEWHERE = (
    r"(ganze[sn]?|gesamte[sn]?) (team|firma|abteilung|belegschaft)|"
    r"keine (e-?mails?|mails|tickets|nachrichten) mehr|bei allen (leer|weg|agent\w*|kolleg\w*|mitarbeite\w*)|"
    r"f[üu]r alle (agenten|mitarbeiter|nutzer|kollegen)|toute l'[ée]quipe|"
    r"plus aucun(e)? (e-?mail|mail|ticket|message)s?|pour tous les (agents|utilisateurs|clients)|"
    r"todo el equipo|ya no (llegan|recibimos|entran)|para todos los (agentes|usuarios|clientes)|"
    r"tutt[oa] (il team|la squadra|l'ufficio)|non (arriva|arrivano|riceviamo) pi[ùu]|"
    r"per tutti gli (operatori|utenti|agenti)|toda a (equipe|equipa)|"
    r"n[ãa]o (chega|chegam|recebemos) mais|para todos os (agentes|usu[áa]rios|clientes)|"
    r"het hele team|geen (e-?mails?|mails|tickets|berichten) meer|voor alle (agenten|medewerkers|gebruikers|klanten)|"
    r"alle (agents|medewerkers|gebruikers)|"
    # Mail no longer arriving, said in plain words: "aucun message des habitants reçu depuis 7h".
    r"aucun(e)? (nouveau |nouvel )?(message|e-?mail|mail|ticket|courriel)s?(\s+\S+){0,3}?\s+(re[çc]us?|arriv[ée]e?s?)|"
    r"keine (neuen )?(e-?mails?|mails|nachrichten|tickets)(\s+\S+){0,3}?\s+(angekommen|eingegangen|empfangen)|"
    r"ning[úu]n (correo|mensaje|email|ticket)(\s+\S+){0,3}?\s+(ha )?(llegado|entrado|recibido)|"
    r"nessun[ao]? (mail|email|e-mail|messaggio|ticket)(\s+\S+){0,3}?\s+([èe] )?(arrivat[oa]|ricevut[oa]|entrat[oa])|"
    r"nenhum[a]? (e-?mail|mensagem|ticket|pedido)(\s+\S+){0,3}?\s+(chegou|recebid[oa]|entrou)|"
    r"geen (enkele )?(e-?mail|mail|bericht|ticket)s?(\s+\S+){0,3}?\s+(binnengekomen|ontvangen|aangekomen)"
)
# Mail in other languages says the same things; the common words for them.
_URGENCY_ELSEWHERE = re.compile(
    r"\b(dringend\w*|eilt|sofort|umgehend|urgente?s?|urgence|imm[ée]diatement|"
    r"d[èe]s que possible|lo antes posible|cuanto antes|inmediatamente|"
    r"il prima possibile|subito|o mais r[áa]pido poss[íi]vel|imediatamente|spoedig|zo snel mogelijk)\b",
    re.I,
)
_IMPACT_ELSEWHERE = re.compile(
    r"\b(ausfall|st[öo]rung|funktioniert (nicht|nichts)|geht nicht|produktion|alle (unsere )?"
    r"(nutzer|kunden|agenten|mitarbeiter)|"
    r"panne|ne fonctionne (plus|pas)|hors service|en production|impossible|tous nos|"
    r"ca[íi]da|no funciona|fuera de servicio|producci[óo]n|todos nuestros|"
    r"non funziona|fuori servizio|produzione|tutti i nostri|"
    r"n[ãa]o funciona|fora do ar|produ[çc][ãa]o|parad[oa]|todos os nossos|"
    r"werkt niet|storing|al onze|unerreichbar|inaccessible|"
    r"inaccesible|irraggiungibile|inacess[íi]vel|onbereikbaar|(fehler|erreur|error|errore|erro|fout) 50[0234]|"
    + _EVERYONE_ELSEWHERE
    + r")\b",
    re.I,
)
# Everyone stopped, not one person: an incident this wide is for now, not for later today.
_EVERYONE = re.compile(
    r"\b(all (of )?(our |my |the )?(\d+ )?(users|customers|agents|staff|team)|every (user|customer|agent)|"
    r"(nobody|no one|none of us) (here )?(can|is able|has (received|got))|"
    r"alle (unsere )?(nutzer|kunden|agenten|mitarbeiter)|tous nos|todos nuestros|tutti i nostri|"
    r"todos os nossos|al onze|" + _EVERYONE_STOPPED + "|" + _EVERYONE_ELSEWHERE + r")\b",
    re.I,
)

# Frustration: a customer who has written before, is angry, or is about to leave.
_FRUSTRATION = re.compile(
    r"\b((third|fourth|fifth|second|3rd|4th) time|again and again|yet again|"
    r"still (no|not|nothing|waiting|broken)|no (one|body) (has )?(answered|replied|responded|got back)|"
    r"(haven'?t|have not|never) (heard back|received (a|any) (reply|response|answer))|"
    r"waiting (for|since) (days|weeks|a week|\d+ (days|weeks))|unacceptable|ridiculous|"
    r"fed up|frustrat\w+|furious|appall\w+|disgrace\w*|terrible|worst|"
    r"cancel (our|my|the) (subscription|account|contract|plan)|(we|i) (will|'ll|are going to) "
    r"(cancel|leave|switch)|switch(ing)? to (a |another )?(competitor|provider|vendor)|"
    r"(looking at|considering) (other )?(alternatives|competitors)|chargeback|"
    r"zum (dritten|vierten|wiederholten) (mal|male)|inakzeptabel|unversch[äa]mt|k[üu]ndigen|"
    r"(troisi[èe]me|quatri[èe]me) fois|inacceptable|r[ée]silier|"
    r"(tercera|cuarta) vez|inaceptable|(terza|quarta) volta|inaccettabile|disdire|"
    r"(terceira|quarta) vez|inaceit[áa]vel|derde keer|onacceptabel|opzeggen)\b",
    re.I,
)
# Leaving is frustration in a complaint, but the request itself where an account is closed, and
# a prospect comparing vendors is shopping.
_LEAVING = re.compile(
    r"(cancel (our|my|the) (subscription|account|contract|plan)|(we|i) (will|'ll|are going to) "
    r"(cancel|leave|switch)|switch(ing)? to (a |another )?(competitor|provider|vendor)|"
    r"(looking at|considering) (other )?(alternatives|competitors)|k[üu]ndigen|r[ée]silier|disdire|opzeggen)",
    re.I,
)
LEAVING_IS_THE_REQUEST = frozenset({"account", "sales"})
# A sender telling us the problem is solved: thanks, nothing left to do.
_RESOLVED = re.compile(
    r"\b(that (fixed|solved|did) (it|the trick)|(it'?s|it is|all) (working|good|sorted|fine) now|"
    r"works (now|again|perfectly)|problem (is )?(solved|resolved|gone)|issue (is )?resolved|"
    r"you can close (this|the ticket)|no (further )?action (is )?(needed|required)|just wanted to say thanks|"
    r"jetzt funktioniert|funktioniert wieder|hat geklappt|[çc]a marche|fonctionne (de nouveau|à nouveau)|"
    r"ya funciona|funciona de nuevo|ora funziona|funziona di nuovo|agora funciona|werkt weer)\b",
    re.I,
)
# Mail where an account may be in someone else's hands: the categories that read the cues below.
ACCOUNT_AT_RISK = frozenset({"security", "account", "incident"})
# A customer's own account used by someone else: an attacker may be inside right now.
_COMPROMISE = re.compile(
    r"\b((was|were)n'?t (me|us)|(did|do) not (make|recognise|recognize|authori[sz]e)|"
    r"(didn'?t|don'?t) (make|recognise|recognize|authori[sz]e)|"
    r"(unusual|unknown|unfamiliar|unrecognised|unrecognized|suspicious) (sign-?in|log-?in|login|location|"
    r"country|device|ip|activity|access)|someone (else )?(logged|signed) in|"
    r"not (me|us)|(log-?in|sign-?in|logged in|signed in) from (an? )?(unusual|unknown|new|foreign|another)|"
    # A sign-in or access nobody recognises, and "that was not us", in the other languages of our mail.
    r"(verd[äa]chtige|unbekannte|ungew[öo]hnliche) (anmeldung|zugriff|aktivit[äa]t)|"
    r"(acc[èe]s|connexion|activit[ée]) (suspect|suspecte|inhabituelle?|inconnue?)|"
    r"(acceso|inicio de sesi[óo]n|actividad) (sospechos[oa]|inusual|desconocid[oa])|"
    r"(accesso|attivit[àa]) (sospett[oa]|insolit[oa]|anomal[oa])|"
    r"(acesso|login|atividade) (suspeit[oa]|incomum|desconhecid[oa])|"
    r"(verdachte|onbekende|ongebruikelijke) (login|inlog|aanmelding|toegang|activiteit)|"
    r"nicht von (mir|uns)|(ce )?n'[ée]tait pas (moi|nous)|no (fui|fuimos|hemos sido)|"
    r"non (sono stat[oa]|siamo stati|eravamo) (io|noi)|n[ãa]o (fui eu|fomos n[óo]s)|niet (door )?(mij|ons)|"
    # Data open to anyone: a database or bucket reachable without a password.
    r"(without|ohne|sans|sin|senza|sem|zonder) (any |jede |jegliche )?(authentication|authentifizierung|"
    r"authentification|autenticaci[óo]n|autenticazione|autentica[çc][ãa]o|authenticatie|password|passwort))\b",
    re.I,
)
# A password or key out of our hands, leaked or typed into a phishing page: revoked or changed
# since, most often, but someone must check today whether it was used.
_EXPOSED = re.compile(
    r"\b((api )?(key|token|secret|password|credentials?) (was |were |has been |have been )?"
    r"(leaked|exposed|published|committed|pushed)|(public|publicly visible) (repo|repository|github)|"
    r"vazad[ao]s?|geleakt|gelekt|fuite|filtrad[ao]s?|trapelat[oia]|"
    r"(entered|typed|gave|submitted) (his|her|their|my|our) (password|credentials)|"
    r"(passwort|kennwort|zugangsdaten) eingegeben|(a |ont )?saisi (son|ses|leur|leurs) (mot de passe|identifiants)|"
    r"(introdujo|escribi[óo]) (su|sus) (contrase[ñn]a|credenciales)|ha inserito (la (sua )?password|le credenziali)|"
    r"(introduziu|digitou|inseriu) (a|sua) (password|senha)|(wachtwoord|inloggegevens) ingevuld)\b",
    re.I,
)
# A report of a weakness in the product: someone must look today.
_VULNERABILITY = re.compile(
    r"\b(proof of concept|poc|xss|cross-site|sql injection|remote code execution|rce|ssrf|"
    r"idor|subdomain takeover|account takeover|privilege escalation|open redirect|"
    r"(publicly|openly) (accessible|reachable|exposed)|[öo]ffentlich (zug[äa]nglich|erreichbar))\b",
    re.I,
)
# A weakness reported by whoever found it (a researcher, a bug-bounty hunter, a customer's own
# tester), in the words such reports use; a report is a weakness to look at today.
_DISCLOSURE_REPORT = (
    r"vulnerability report|responsible disclosure|coordinated disclosure|proof of concept|poc|"
    r"(divulgation|divulgaci[óo]n|divulga[çc][ãa]o|divulgazione) responsabile?|"
    r"verantwortungsvolle offenlegung|(rapport|informe|relat[óo]rio|segnalazione|melding) "
    r"(de |di |van )?(vulnérabilité|vulnerabilidad|vulnerabilidade|vulnerabilità|kwetsbaarheid)|"
    r"schwachstellenmeldung|sicherheitsl[üu]cke gefunden"
)
# A subject that names a vulnerability ("Vulnerability report: …", "Sicherheitslücke: …",
# "Kwetsbaarheid: …", "Posible vulnerabilidad: …"): a report of a weakness follows, in whatever
# words its body uses (classify reads it too).
VULNERABILITY_SUBJECT = re.compile(
    r"\b(?P<name>vulnerabilit(y|ies)|security (issue|flaw|hole|bug)|responsible disclosure|"
    r"sicherheitsl[üu]cken?|schwachstellen?|kwetsbaarhe(id|den)|beveiligingslek(ken)?|"
    r"vuln[ée]rabilit[ée]s?|faille de s[ée]curit[ée]|vulnerabilidad(es)?|fallo de seguridad|"
    r"vulnerabilit[àa]|falla di sicurezza|vulnerabilidades?|falha de seguran[çc]a)\b",
    re.I,
)
_REPORTED = re.compile(r"\b(" + _DISCLOSURE_REPORT + r")\b", re.I)
# Who writes such reports, or about them: with these, "without authentication" describes what an
# attacker could do, not what happened ("Bug bounty scope question" asks, it reports nothing).
_DISCLOSURE = re.compile(r"\b(" + _DISCLOSURE_REPORT + r"|bug bounty|security researcher)\b", re.I)
# What scanners find on any domain and unsolicited "bug bounty" mail reports as critical: a
# missing DMARC or SPF record, clickjacking, absent security headers. Worth a look this week,
# never today, whatever the subject line says.
_SCANNER_FINDING = re.compile(
    r"\b(missing (a )?(dmarc|spf|dkim|caa)( record)?|no (dmarc|spf) record|(dmarc|spf) (record )?(is )?missing|"
    r"clickjacking|x-frame-options|missing (http )?security headers?|(content-security-policy|hsts) "
    r"(header )?(is )?missing)\b",
    re.I,
)
# A data-subject request (GDPR and its kin) runs on a statutory clock. The law's name alone is not
# one: a processing agreement or a sub-processor list cites the GDPR too, and is contract work.
_DATA_SUBJECT = re.compile(
    r"\b(data subject (access )?request|subject access request|right (to|of) (erasure|access|be forgotten)|"
    r"(request|requests|requesting|asking) (for )?(the )?(erasure|deletion|access|a copy) (of|to) (my|our|his|her|their|all) "
    r"(personal )?(data|information)|(erase|delete) (all )?(my|his|her) (personal )?(data|information)|"
    r"art(icle|\.|ikel|igo|icolo|\.?º)? ?1[57]\b\.?|auskunft\w*|l[öo]schung\w*|droit (à l'effacement|d'acc[èe]s)|"
    r"(acc[èe]s|effacement|suppression) (à |de )?(mes|ses|leurs) donn[ée]es|"
    r"derecho (de acceso|de supresi[óo]n)|(acceso|supresi[óo]n) (a|de) (mis|sus) datos|"
    r"direito (de acesso|ao apagamento)|(acesso|exclus[ãa]o|apagamento) (aos|dos|de) (meus )?dados|"
    r"diritto (di accesso|alla cancellazione)|(accesso|cancellazione) (ai|dei) (miei )?dati|"
    r"inzageverzoek|verwijderverzoek|(inzage in|verwijdering van) (mijn|gegevens))\b",
    re.I,
)
# A lost second factor (a phone or authenticator lost, stolen or replaced): the person cannot
# work until support has checked who they are and reset it, which no self-service link does.
_SECOND_FACTOR = re.compile(
    r"\b(2fa|mfa|two-factor|two factor|2-step|two-step|authenticator|authentication app|otp|"
    r"zwei-faktor\w*|2-faktor\w*|authentifi(zierungs|cator)-?app|double authentification|a2f|"
    r"authentification (à deux facteurs|forte)|(autenticaci[óo]n|verificaci[óo]n) en dos pasos|"
    r"doble factor|(autenticazione|verifica) (a due fattori|in due passaggi)|"
    r"(autentica[çc][ãa]o|verifica[çc][ãa]o) (de|em) dois (fatores|passos)|"
    r"tweestapsverificatie|twee-factor\w*|tweefactor\w*)\b",
    re.I,
)
_DEVICE_GONE = re.compile(
    r"\b(lost|stolen|broke|broken|smashed|replaced|wiped|old phone|new phone|no longer (have|has)|"
    r"verloren|gestohlen|kaputt|neues (handy|telefon)|altes (handy|telefon)|perdu|vol[ée]|cass[ée]|"
    r"nouveau t[ée]l[ée]phone|perd[íi]|robad[oa]|roto|nuevo m[óo]vil|pers[oa]|rubat[oa]|rotto|"
    r"nuovo (telefono|cellulare)|perdi|roubad[oa]|avariad[oa]|novo (telem[óo]vel|celular)|"
    r"kwijt|gestolen|kapot|nieuwe telefoon)\b",
    re.I,
)
# Saying "not urgent" is not urgency.
_NEGATED = re.compile(
    r"\b(not|no|nicht|kein|pas|non|no es|n[ãa]o [ée]|niet)\s+(so\s+|very\s+|sehr\s+)?$", re.I
)
# A receipt confirms a payment that went through: there is nothing to do.
_RECEIPT = re.compile(
    r"\b(receipt|payment (received|confirmation|successful)|thank you for your (order|payment|purchase)|"
    r"quittung|zahlungsbest[äa]tigung|re[çc]u de paiement|recibo|ricevuta|comprovante|betalingsbewijs)\b",
    re.I,
)
# A bill sent by a machine (Auto-Submitted) is a statement like a receipt, unless it says that a
# payment failed or is overdue.
_BILLING_PROBLEM = re.compile(
    r"\b(fail(ed|ure)?|declined|overdue|past due|unpaid|outstanding|action required|reminder|"
    r"suspend\w*|fehlgeschlagen|abgelehnt|[üu]berf[äa]llig|mahnung|zahlungserinnerung|"
    r"[ée]chec|refus[ée]e?|impay[ée]e?|relance|rechazad[oa]|fallid[oa]|vencid[oa]|pendiente|"
    r"rifiutat[oa]|non riuscit[oa]|scadut[oa]|sollecito|recusad[oa]|falhou|em atraso|"
    r"mislukt|geweigerd|achterstallig|herinnering)\b",
    re.I,
)
# Categories that mean there is no problem to fix now (feedback: opinions and suggestions;
# other: mail about anything else). Words like "urgent" or "broken" there describe a story or an
# opinion, and "the answer came within an hour" is praise, not a deadline: not work for today.
# Frustration still counts.
NO_IMMEDIATE_PROBLEM = frozenset({"feedback", "other"})
# "By tomorrow" sent in the afternoon is due some 25 hours later, and is as pressing as "by
# tonight": a deadline within the next working day counts fully.
DUE_SOON_HOURS = 36
# A deadline days away is work for this week: it adds a little, but never makes the message
# one for today ("questions about the notice, by next Friday" is not P1 for its date). Nor does
# a deadline make a message one for now: "back before end of day" is for today (P1), and what
# makes an incident P0 is its impact.
DUE_THIS_WEEK_HOURS = 72
# Mail about anything else that asks for something by a date within the working week (a press
# query "by Thursday", a vote on the office party "bis Freitag", a reference letter) wants
# someone to act this week; without a date it is for whenever there is time.
ASKED_BY_A_DATE_HOURS = 120
# A how-to question shouted ("URGENT!!! ASAP", "DRINGEND") with nothing broken for more than the
# sender, no date and no anger is a question for this week: its urgency words count once.
SHOUTING_COUNTS_ONCE = frozenset({"support"})
_UNTIL = re.compile(r"(until|till|'til)\b", re.I)
P2_FLOOR = next(floor for floor, level in LEVELS if level == "P2")
P1_FLOOR = next(floor for floor, level in LEVELS if level == "P1")
P0_FLOOR = next(floor for floor, level in LEVELS if level == "P0")
FRUSTRATED_FLOOR = P1_FLOOR  # an angry or repeat complaint waits no longer than today
# P0 is for what stops a customer's work or lets someone else into it: an outage, a compromise,
# an account in the wrong hands. A question, a bill, a purchase, a legal letter, an opinion is
# at most for today, however loud ("URGENT!!! view missing", marked high priority, a deadline
# tonight): shouting does not make a how-to an outage.
TODAY_AT_MOST = frozenset({"support", "billing", "sales", "legal", "feedback", "other"})


@dataclass
class PriorityPolicy:
    vip_addresses: frozenset[str] = frozenset()
    vip_domains: frozenset[str] = frozenset()
    # Where each category starts; CATEGORY_BASE for categories not named here.
    category_base: dict[str, int] = field(default_factory=dict)


@dataclass
class PriorityDecision:
    score: int
    level: str
    reasons: list[str] = field(default_factory=list)
    deadlines: list[dict] = field(default_factory=list)
    # The lowest level the rules allow whatever else reads the message (a frustrated sender: P1;
    # an important sender: the rules' own level; mail that needs no action: P3).
    floor: str = "P3"
    # The most urgent level they allow it (a question, a bill, an opinion: P1, for today at most;
    # mail that needs no action: P3).
    ceiling: str = "P0"
    # The rules' own level where the level head moved it (levels.second_reading), else "".
    rules_level: str = ""

    def to_dict(self) -> dict:
        return {"score": self.score, "level": self.level, "reasons": self.reasons,
                "deadlines": self.deadlines}  # fmt: skip


def level_for(score: int) -> str:
    return next(level for floor, level in LEVELS if score >= floor)


def prioritize(
    message: ParsedMessage,
    category: str,
    policy: PriorityPolicy | None = None,
    *,
    thread_started: datetime | None = None,
) -> PriorityDecision:
    policy = policy or PriorityPolicy()
    if category in NO_REPLY:
        return PriorityDecision(0, "P3", [f"category {category}: no action needed"],
                                floor="P3", ceiling="P3")  # fmt: skip
    reasons: list[str] = []
    score = policy.category_base.get(category, CATEGORY_BASE.get(category, 10))
    reasons.append(f"category {category} (+{score})")
    text = f"{message.subject}\n{message.new_text or message.text}"

    urgent = sorted({m.group(0).lower() for pattern in (_URGENCY, _URGENCY_ELSEWHERE)
                     for m in pattern.finditer(text)
                     if not _NEGATED.search(text[max(0, m.start() - 16):m.start()])})  # fmt: skip
    urgency_points = 0
    if urgent and category not in NO_IMMEDIATE_PROBLEM:
        urgency_points = min(20, 10 * len(urgent))
        score += urgency_points
        reasons.append(f"urgency language: {', '.join(urgent[:3])} (+{urgency_points})")
    impact = sorted({m.group(0).lower() for pattern in (_IMPACT, _IMPACT_ELSEWHERE)
                     for m in pattern.finditer(text)})  # fmt: skip
    # Something broken for everyone is impact in itself ("all 58 agents get an error"); the same
    # words in a request ("merge the workspaces of all 39 users") are not.
    everyone = (sorted({m.group(0).lower() for m in _EVERYONE.finditer(text)})
                if category == "incident" else [])  # fmt: skip
    impact = sorted(set(impact) | set(everyone))
    if impact and category not in NO_IMMEDIATE_PROBLEM:
        points = min(20, 10 * len(impact))
        score += points
        reasons.append(f"business impact: {', '.join(impact[:3])} (+{points})")

    if everyone:
        score += 5
        reasons.append(f"everyone affected: {', '.join(everyone[:2])} (+5)")

    compromise = sorted({m.group(0).lower() for m in _COMPROMISE.finditer(text)})
    disclosure = _DISCLOSURE.search(text)
    if compromise and disclosure:
        # A researcher's report says what an attacker could do ("download any attachment
        # without authentication"), not that anyone did: a weakness for today, not a break-in.
        reasons.append(f"a disclosure ({disclosure.group(0).lower()}): what could happen, not "
                       f"what happened ({', '.join(compromise[:2])})")  # fmt: skip
        compromise = []
    if compromise and category in ACCOUNT_AT_RISK:
        score += 30
        reasons.append(f"account may be in someone else's hands: {', '.join(compromise[:2])} (+30)")
    exposed = _EXPOSED.search(text) if category in ACCOUNT_AT_RISK else None
    if exposed and not compromise:
        score += 15
        reasons.append(f"a password or key out of our hands: {exposed.group(0).lower()} (+15)")
    if category in ("security", "incident"):
        weakness = sorted({m.group(0).lower() for pattern in (_VULNERABILITY, _REPORTED)
                           for m in pattern.finditer(text)})  # fmt: skip
        if named := VULNERABILITY_SUBJECT.search(message.subject):
            weakness.append(f"subject: {named.group('name').lower()}")
        if weakness:
            score += 15
            reasons.append(f"a weakness reported: {', '.join(weakness[:2])} (+15)")
    finding = _SCANNER_FINDING.search(text) if category == "security" else None
    if finding and not compromise and score >= P1_FLOOR:
        reasons.append(f"a scanner's finding: {finding.group(0).lower()} (held below {P1_FLOOR})")
        score = P1_FLOOR - 1
    if category == "legal":
        request = sorted({m.group(0).lower() for m in _DATA_SUBJECT.finditer(text)})
        if request:
            score += 15
            reasons.append(
                f"data-subject request on a statutory clock: {', '.join(request[:2])} (+15)"
            )
    if category == "account":
        factor, device = _SECOND_FACTOR.search(text), _DEVICE_GONE.search(text)
        if factor and device:
            score += 10
            reasons.append(f"a second factor lost: {factor.group(0).lower()}, "
                           f"{device.group(0).lower()}: locked out until support resets it (+10)")  # fmt: skip
    frustration = sorted({m.group(0).lower() for m in _FRUSTRATION.finditer(text)
                          if category not in LEAVING_IS_THE_REQUEST
                          or not _LEAVING.fullmatch(m.group(0))})  # fmt: skip
    if frustration:
        points, capped = min(25, 15 * len(frustration)), ""
        if score < P0_FLOOR <= score + points:
            points, capped = P0_FLOOR - 1 - score, ", anger is for today, not for now"
        score += points
        reasons.append(f"frustration: {', '.join(frustration[:3])} (+{points}{capped})")
    if category == "billing" and not (urgent or impact or frustration):
        receipt = _RECEIPT.search(message.subject)
        auto_submitted = message.auto_submitted
        if receipt:
            score -= 15
            reasons.append(f"a receipt: {receipt.group(0).lower()} (-15)")
        elif auto_submitted not in ("", "no") and not _BILLING_PROBLEM.search(text):
            score -= 15
            reasons.append(
                f"a statement sent by a machine (Auto-Submitted: {auto_submitted}) (-15)"
            )
    resolved = sorted({m.group(0).lower() for m in _RESOLVED.finditer(text)})
    calm = not (urgent or impact or frustration or compromise)
    if resolved and calm:
        score -= 25
        reasons.append(f"says it is solved: {', '.join(resolved[:2])} (-25)")

    sent = message.date or datetime.now(UTC)
    deadlines = find_deadlines(text, sent, message.language)
    if deadlines and category not in NO_IMMEDIATE_PROBLEM:
        hours = deadlines[0].hours_after(sent)
        points = 20 if hours <= DUE_SOON_HOURS else 12 if hours <= DUE_THIS_WEEK_HOURS else 5
        capped = ""
        if hours > DUE_THIS_WEEK_HOURS and score < P1_FLOOR <= score + points:
            points, capped = P1_FLOOR - 1 - score, ", days away: not for today"
        elif score < P0_FLOOR <= score + points:
            points, capped = P0_FLOOR - 1 - score, ", a deadline is for today, not for now"
        score += points
        reasons.append(f"deadline {deadlines[0].text!r} ({deadlines[0].due:%Y-%m-%d %H:%M}, "
                       f"{hours:.0f} h after sending) (+{points}{capped})")  # fmt: skip

    if category == "other" and deadlines and score < P2_FLOOR:
        hours = deadlines[0].hours_after(sent)
        # "Until Friday" says how long something lasts ("the umbrella stays at reception until
        # Friday"), not what we are asked to do by then.
        if hours <= ASKED_BY_A_DATE_HOURS and not _UNTIL.match(deadlines[0].text):
            reasons.append(f"asked to act by {deadlines[0].text!r} ({hours:.0f} h after sending): "
                           f"work for this week (raised to {P2_FLOOR})")  # fmt: skip
            score = P2_FLOOR

    if (category in SHOUTING_COUNTS_ONCE and urgency_points > 10
            and not (impact or frustration or deadlines)):  # fmt: skip
        score -= urgency_points - 10
        reasons.append(f"nothing but shouting: a question asked loudly is counted once "
                       f"(-{urgency_points - 10})")  # fmt: skip

    sender = (message.from_address or "").lower()
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else ""
    important = sender in policy.vip_addresses or domain in policy.vip_domains
    if important:
        score += 20
        reasons.append(f"important sender {sender} (+20)")

    x_priority = (message.header("X-Priority") or "").strip()[:1]
    importance = (message.header("Importance") or message.header("Priority") or "").strip().lower()
    if x_priority in ("1", "2") or importance in ("high", "urgent"):
        score += 10
        reasons.append("marked high priority by the sender (+10)")
    elif x_priority in ("4", "5") or importance in ("low", "non-urgent"):
        score -= 10
        reasons.append("marked low priority by the sender (-10)")

    if thread_started is not None and message.date is not None:
        days = (message.date - thread_started).total_seconds() / 86400
        if days >= 3:
            score += 10
            reasons.append(f"thread open for {days:.0f} days (+10)")
    elif len(message.references) >= 3:
        score += 5
        reasons.append(f"long thread ({len(message.references)} earlier messages) (+5)")

    if frustration and score < FRUSTRATED_FLOOR:
        reasons.append(f"a frustrated sender is answered today (raised to {FRUSTRATED_FLOOR})")
        score = FRUSTRATED_FLOOR
    if category in TODAY_AT_MOST and score >= P0_FLOOR:
        reasons.append(f"{category} mail is for today at most, not for now (held below {P0_FLOOR})")
        score = P0_FLOOR - 1
    score = max(0, min(100, score))
    # What nothing that reads the message later may lower it below: a frustrated sender is
    # answered today, and an important sender is the operator's own word on this mail.
    floor = score if important else FRUSTRATED_FLOOR if frustration else 0
    return PriorityDecision(score, level_for(score), reasons, [d.to_dict() for d in deadlines],
                            floor=level_for(floor),
                            ceiling="P1" if category in TODAY_AT_MOST else "P0")  # fmt: skip
