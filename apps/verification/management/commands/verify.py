"""manage.py verify: verify email addresses from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from apps.verification.evidence import address_key, apply_found, evidence_for
from apps.verification.services import build_verifier, verifier_config

ACCEPTED_INPUT = (
    "Give addresses as arguments, '-' to read them from standard input, or a file of addresses "
    "(one per line) with --file PATH or as an argument."
)


def _decode_lines(data: bytes) -> list[str]:
    # Undecodable bytes survive as surrogates, which the syntax check reports as invalid.
    return data.decode("utf-8", errors="surrogateescape").splitlines()


def _printable(text: str) -> str:
    # Undecodable input bytes (carried as surrogates) are shown as \xNN escapes.
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")


class Command(BaseCommand):
    help = (
        "Verify email addresses: syntax, DNS, lists and SMTP (never sending mail). "
        + ACCEPTED_INPUT
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("inputs", nargs="*", metavar="ADDRESS", help="addresses, '-' or files")
        parser.add_argument(
            "--file",
            "-f",
            action="append",
            default=[],
            metavar="PATH",
            help="a file of addresses, one per line (repeatable)",
        )
        parser.add_argument("--json", action="store_true", help="one JSON object per line")
        parser.add_argument(
            "--no-smtp",
            action="store_true",
            help="stop after syntax, DNS and lists (no connection to mail servers)",
        )
        parser.add_argument(
            "--greylist-wait",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="how long to keep retrying greylisted addresses (default 0)",
        )
        parser.add_argument("--no-cache", action="store_true", help="ignore cached verdicts")

    def _read_inputs(self, options) -> list[str]:
        addresses: list[str] = []
        for value in options["inputs"]:
            if value == "-":
                addresses.extend(_decode_lines(sys.stdin.buffer.read()))
            elif "@" not in value and Path(value).is_file():
                addresses.extend(self._read_file(value))
            else:
                addresses.append(value)
        for path in options["file"]:
            addresses.extend(self._read_file(path))
        return addresses

    @staticmethod
    def _read_file(path: str) -> list[str]:
        try:
            return _decode_lines(Path(path).read_bytes())
        except OSError as exc:
            raise CommandError(
                f"Cannot read {path}: {exc.strerror}. {ACCEPTED_INPUT}", returncode=2
            ) from exc

    def handle(self, *args, **options) -> None:
        if options["greylist_wait"] < 0:
            raise CommandError(
                "--greylist-wait takes a number of seconds, 0 or more.", returncode=2
            )
        addresses = self._read_inputs(options)
        if not addresses:
            raise CommandError(f"No addresses to verify. {ACCEPTED_INPUT}", returncode=2)
        # Read before the event loop starts: the database is not used from inside it.
        self.evidence = self._mail_evidence(addresses)
        try:
            asyncio.run(self._run(addresses, options))
        except KeyboardInterrupt:
            raise CommandError("Interrupted.", returncode=130) from None

    def _mail_evidence(self, addresses: list[str]) -> dict:
        """The mail evidence for the addresses (docs/verification.md, "Evidence from mail"); none,
        said once on stderr, where the database cannot be read: the checks still run."""
        config = verifier_config()
        try:
            return evidence_for(address_key(address, config) for address in addresses)
        except DatabaseError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.stderr.write(f"Mail evidence not used: the database cannot be read ({reason}).")
            return {}

    async def _run(self, addresses: list[str], options) -> None:
        verifier = build_verifier(use_cache=not options["no_cache"])
        as_json = options["json"]
        pending: dict[int, object] = {}
        next_index = 0
        show_progress = len(addresses) > 20 and sys.stderr.isatty()
        done = 0
        if not as_json:
            self.stdout.write(
                f"{'ADDRESS':<40} {'VERDICT':<13} {'REASON':<23} {'SCORE':>5}  DETAIL"
            )

        def on_result(index: int, result) -> None:
            # Print in input order, each line as soon as everything before it is decided.
            nonlocal next_index, done
            result = apply_found(result, self.evidence)
            result.address = _printable(result.address)
            pending[index] = result
            done += 1
            while next_index in pending:
                self._emit(pending.pop(next_index), as_json)
                next_index += 1
            if show_progress:
                sys.stderr.write(f"\rverified {done}/{len(addresses)}")
                sys.stderr.flush()

        await verifier.verify_many(
            addresses,
            smtp=not options["no_smtp"],
            greylist_wait=options["greylist_wait"],
            use_cache=not options["no_cache"],
            on_result=on_result,
        )
        if show_progress:
            sys.stderr.write("\n")

    def _emit(self, result, as_json: bool) -> None:
        if as_json:
            self.stdout.write(_printable(json.dumps(result.to_dict(), ensure_ascii=False)))
            return
        detail = ""
        smtp = result.smtp
        if result.syntax.get("error"):
            detail = result.syntax["error"]
        elif result.evidence:
            mail = result.evidence[0]
            detail = f"{mail['kind']} {mail['seen_at'][:10]} {mail['detail']}".strip()
        elif smtp.error:
            detail = smtp.error
        elif smtp.host:
            detail = f"{smtp.host}" + (" (TLS)" if smtp.tls else "")
        elif result.mx.get("error"):
            detail = result.mx["error"]
        if result.suggestion:
            detail = f"did you mean {result.suggestion}? {detail}".strip()
        address = result.address if len(result.address) <= 40 else result.address[:37] + "..."
        self.stdout.write(
            f"{address:<40} {result.verdict:<13} {result.reason:<23} {result.score:>5}  {detail[:120]}"
        )
