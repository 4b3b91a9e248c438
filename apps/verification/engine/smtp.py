"""One SMTP conversation with a domain's mail servers, reused for several of its addresses.

It connects to the MX hosts in preference order (the next one on connection failure), says EHLO
with the configured name, upgrades with STARTTLS when offered, then for each address: RSET (when
the connection is reused), MAIL FROM, RCPT TO and, when asked, RCPT TO a random local part to
detect a catch-all. It never sends DATA: nothing is ever delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field

import aiosmtplib

from apps.verification.engine.addresses import forbidden_reason
from apps.verification.engine.config import VerifierConfig
from apps.verification.engine.dns import MxHost
from apps.verification.engine.replies import ReplyKind, classify, enhanced_code
from apps.verification.engine.result import SmtpStep

TIMEOUT = "timeout"
CONNECTION_FAILED = "connection_failed"
SMTP_ERROR = "smtp_error"
FORBIDDEN_ADDRESS = "forbidden_address"


@dataclass
class ProbeOutcome:
    kind: str  # a ReplyKind value, or TIMEOUT / CONNECTION_FAILED / SMTP_ERROR
    stage: str = "rcpt"  # the step that decided: connect, ehlo, mail or rcpt
    host: str | None = None
    tls: bool = False
    connection: str | None = None
    catch_all: bool | None = None
    error: str | None = None
    steps: list[SmtpStep] = field(default_factory=list)

    @property
    def about_the_server(self) -> bool:
        """True when the outcome concerns the server or us, not this one address, so every other
        address of the domain would get the same answer right now."""
        return self.stage in ("connect", "ehlo", "mail") or self.kind in (
            TIMEOUT,
            CONNECTION_FAILED,
            ReplyKind.BLOCKED,
            ReplyKind.RATE_LIMITED,
        )


class _StepFailed(Exception):
    def __init__(self, kind: str, stage: str, error: str) -> None:
        super().__init__(error)
        self.kind, self.stage, self.error = kind, stage, error


def _first_line(text: str) -> str:
    return (text or "").splitlines()[0] if text else ""


class SmtpSession:
    """Holds at most one open connection and the politeness slot for the server it talks to."""

    def __init__(self, config: VerifierConfig, limiter, hosts: list[MxHost]) -> None:
        self.config = config
        self.limiter = limiter
        self.hosts = hosts
        self._smtp: aiosmtplib.SMTP | None = None
        self._slot: contextlib.AbstractAsyncContextManager | None = None
        self.server_ip: str | None = None
        self.server_name: str | None = None
        self.tls = False
        self._no_tls: set[str] = set()
        self._used = False

    @property
    def connected(self) -> bool:
        return self._smtp is not None and self._smtp.is_connected

    async def _step(self, steps: list[SmtpStep], label: str, command, stage: str):
        """Run one command (or the connect, stage "connect"), record its reply, and return the
        SMTPResponse; raise _StepFailed with what the failure means."""
        started = time.perf_counter()
        try:
            response = await command
        except TimeoutError as exc:
            steps.append(SmtpStep(label, None, "no reply in time", None, _ms(started)))
            raise _StepFailed(TIMEOUT, stage, f"{label}: no reply in time") from exc
        except aiosmtplib.SMTPServerDisconnected as exc:
            steps.append(SmtpStep(label, None, "connection closed", None, _ms(started)))
            raise _StepFailed(CONNECTION_FAILED, stage, f"{label}: server disconnected") from exc
        except aiosmtplib.SMTPResponseException as exc:
            steps.append(_reply_step(label, exc.code, exc.message, started))
            # A refusal in the greeting is read as one: about us, never about a mailbox.
            kind = classify(exc.code, exc.message, "greeting" if stage == "connect" else stage)
            raise _StepFailed(kind, stage, f"{label}: {exc.code} {exc.message}") from exc
        except (OSError, aiosmtplib.SMTPException) as exc:
            steps.append(SmtpStep(label, None, str(exc)[:200], None, _ms(started)))
            raise _StepFailed(CONNECTION_FAILED, stage, f"{label}: {exc}") from exc
        steps.append(_reply_step(label, response.code, response.message, started))
        return response

    async def _open(self, steps: list[SmtpStep]) -> None:
        """Connect to the first MX address that greets us; raise _StepFailed if none does."""
        failures: list[_StepFailed] = []
        forbidden: list[_StepFailed] = []
        for mx in self.hosts:
            for ip in mx.addresses:
                # The verifier leaves such addresses out before it gets here; this is the last
                # word, next to the connect itself.
                why = forbidden_reason(ip, self.config.smtp_allowed_networks)
                if why is not None:
                    error = f"{mx.host} [{ip}] is {why}; not connected to"
                    forbidden.append(_StepFailed(FORBIDDEN_ADDRESS, "connect", error))
                    continue
                slot = self.limiter.slot(ip)
                await slot.__aenter__()
                try:
                    await self._connect_one(mx.host, ip, steps)
                except _StepFailed as failure:
                    failures.append(failure)
                    await self._drop()
                    await slot.__aexit__(None, None, None)
                    continue
                except BaseException:
                    await self._drop()
                    await slot.__aexit__(None, None, None)
                    raise
                self._slot = slot
                return
        if not failures and forbidden:
            raise forbidden[0]
        if not failures:
            raise _StepFailed(CONNECTION_FAILED, "connect", "no MX address to connect to")
        # Report the most telling failure: a refusal beats a timeout beats a refused connection.
        for kind in (
            ReplyKind.BLOCKED,
            ReplyKind.RATE_LIMITED,
            ReplyKind.GREYLISTED,
            ReplyKind.TEMPORARY,
            TIMEOUT,
        ):
            for failure in failures:
                if failure.kind == kind:
                    raise failure
        raise failures[-1]

    async def _connect_one(self, name: str, ip: str, steps: list[SmtpStep]) -> None:
        config = self.config
        source = (config.smtp_source_address, 0) if config.smtp_source_address else None
        smtp = aiosmtplib.SMTP(
            hostname=ip,
            port=config.smtp_port,
            local_hostname=config.helo_hostname,
            source_address=source,
            timeout=config.command_timeout,
            start_tls=False,
            validate_certs=config.tls_verify,
        )
        self._smtp, self.server_ip, self.server_name, self.tls = smtp, ip, name, False
        # One timeout for the TCP connect and the greeting: a tarpit costs no more than this.
        connect = asyncio.wait_for(
            smtp.connect(timeout=config.connect_timeout), config.connect_timeout
        )
        await self._step(steps, f"CONNECT {name} [{ip}]:{config.smtp_port}", connect, "connect")
        await self._step(steps, "EHLO", smtp.ehlo(), "ehlo")
        if smtp.supports_extension("starttls") and ip not in self._no_tls:
            try:
                await self._step(
                    steps,
                    "STARTTLS",
                    smtp.starttls(server_hostname=name, validate_certs=config.tls_verify),
                    "ehlo",
                )
                await self._step(steps, "EHLO", smtp.ehlo(), "ehlo")
                self.tls = True
            except (_StepFailed, ssl.SSLError) as exc:
                # Opportunistic TLS: a broken handshake is retried once in the clear.
                self._no_tls.add(ip)
                raise _StepFailed(CONNECTION_FAILED, "connect", f"STARTTLS failed: {exc}") from exc

    async def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
        self._smtp = None
        self._used = False

    async def close(self) -> None:
        """QUIT politely, then give the server's slot back."""
        if self.connected:
            with contextlib.suppress(Exception):
                await self._smtp.quit(timeout=min(5.0, self.config.command_timeout))
        await self._drop()
        if self._slot is not None:
            slot, self._slot = self._slot, None
            await slot.__aexit__(None, None, None)

    async def probe(
        self, rcpt: str, *, smtputf8: bool, catch_all_rcpt: str | None = None
    ) -> ProbeOutcome:
        steps: list[SmtpStep] = []
        connection = "reused" if self.connected and self._used else "new"
        try:
            if connection == "reused":
                try:
                    await self._step(steps, "RSET", self._smtp.rset(), "mail")
                except _StepFailed:
                    await self.close()
                    connection = "new"
            if connection == "new":
                for attempt in range(2):
                    try:
                        await self._open(steps)
                        break
                    except _StepFailed as failure:
                        # A failed STARTTLS is retried once without it; nothing else is.
                        if attempt or "STARTTLS" not in failure.error:
                            raise
            self._used = True
            return await self._transaction(rcpt, smtputf8, catch_all_rcpt, steps, connection)
        except _StepFailed as failure:
            if failure.kind in (TIMEOUT, CONNECTION_FAILED) or failure.stage != "rcpt":
                await self.close()
            return ProbeOutcome(
                kind=str(failure.kind),
                stage=failure.stage,
                host=self.server_name,
                tls=self.tls,
                connection=connection,
                error=failure.error,
                steps=steps,
            )

    async def _transaction(
        self, rcpt: str, smtputf8: bool, catch_all_rcpt: str | None, steps, connection
    ) -> ProbeOutcome:
        smtp = self._smtp
        options = []
        if smtputf8:
            if not smtp.supports_extension("smtputf8"):
                raise _StepFailed(SMTP_ERROR, "mail", "the server does not support SMTPUTF8")
            options.append(b"SMTPUTF8")
        sender = self.config.envelope_sender.encode()
        mail = await self._step(
            steps,
            "MAIL FROM",
            smtp.execute_command(b"MAIL", b"FROM:<" + sender + b">", *options),
            "mail",
        )
        if mail.code >= 400:
            raise _StepFailed(
                classify(mail.code, mail.message, "mail"),
                "mail",
                f"MAIL FROM: {mail.code} {mail.message}",
            )
        await self.limiter.take_token(self.server_ip)
        reply = await self._step(
            steps, "RCPT TO", smtp.execute_command(b"RCPT", b"TO:<" + rcpt.encode() + b">"), "rcpt"
        )
        kind = classify(reply.code, reply.message, "rcpt")
        outcome = ProbeOutcome(
            kind=str(kind),
            stage="rcpt",
            host=self.server_name,
            tls=self.tls,
            connection=connection,
            error=None
            if kind is ReplyKind.ACCEPTED
            else f"{reply.code} {_first_line(reply.message)}",
            steps=steps,
        )
        if kind is ReplyKind.ACCEPTED and catch_all_rcpt:
            await self.limiter.take_token(self.server_ip)
            probe = await self._step(
                steps,
                "RCPT TO (catch-all probe)",
                smtp.execute_command(b"RCPT", b"TO:<" + catch_all_rcpt.encode() + b">"),
                "rcpt",
            )
            probe_kind = classify(probe.code, probe.message, "rcpt")
            if probe_kind is ReplyKind.ACCEPTED:
                outcome.catch_all = True
            elif probe_kind in (ReplyKind.MAILBOX_NOT_FOUND, ReplyKind.MAILBOX_DISABLED):
                outcome.catch_all = False
        return outcome


def _reply_step(label: str, code: int, message: str, started: float) -> SmtpStep:
    return SmtpStep(label, code, _first_line(message), enhanced_code(message), _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
