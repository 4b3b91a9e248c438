"""One HTTP POST to a vetted webhook target, over the standard library's http.client: it
connects to the address that was vetted (never resolving the name again), sends the URL's host
in the Host header and as the TLS server name, and never follows a redirect."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass

from apps.webhooks.targets import IPAddress, Target

CONNECT_TIMEOUT = 5.0
TOTAL_TIMEOUT = 10.0
# Of the receiver's answer only the start is kept, for the delivery's record.
KEPT_BODY_BYTES = 2048


class SendError(OSError):
    """No HTTP answer: the connection, TLS or the exchange failed or took too long."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    address: str  # the address connected to


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, address: IPAddress, deadline: float) -> None:
        super().__init__(target.host, target.port, timeout=CONNECT_TIMEOUT)
        self.address = address
        self.deadline = deadline

    def _open_socket(self) -> socket.socket:
        sock = socket.create_connection((str(self.address), self.port), timeout=CONNECT_TIMEOUT)
        sock.settimeout(max(0.1, self.deadline - time.monotonic()))
        return sock

    def connect(self) -> None:
        self.sock = self._open_socket()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = http.client.HTTPS_PORT

    def __init__(self, target: Target, address: IPAddress, deadline: float) -> None:
        super().__init__(target, address, deadline)
        self.tls = ssl.create_default_context()

    def connect(self) -> None:
        # The certificate is checked against the URL's host, not the address connected to.
        self.sock = self.tls.wrap_socket(self._open_socket(), server_hostname=self.host)


def post(target: Target, body: bytes, headers: dict[str, str]) -> Answer:
    """POST body to the target's first address that takes a connection. Raises SendError when
    none answers in time."""
    deadline = time.monotonic() + TOTAL_TIMEOUT
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    errors = []
    for address in target.addresses:
        if time.monotonic() >= deadline:
            break
        connection = connection_class(target, address, deadline)
        try:
            try:
                connection.connect()
            except OSError as exc:  # try the name's next address
                errors.append(f"{address}: {exc or type(exc).__name__}")
                continue
            try:
                connection.request("POST", target.path, body=body, headers=headers)
                response = connection.getresponse()
                kept = response.read(KEPT_BODY_BYTES)
            except (OSError, http.client.HTTPException) as exc:
                raise SendError(f"{address}: {type(exc).__name__}: {exc}") from exc
            return Answer(status=response.status, reason=response.reason,
                          headers={k.lower(): v for k, v in response.getheaders()},
                          body=kept, address=str(address))  # fmt: skip
        finally:
            connection.close()
    raise SendError("could not connect: " + ("; ".join(errors) or "out of time"))
