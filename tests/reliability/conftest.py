"""Fixtures of the fault tests: a PostgreSQL cluster and verification farm per test run, and a
whole mailscore per test (or per module), stopped whatever happened, its logs shown on failure."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from tests.farm import Farm, FarmSpec, ServerSpec
from tests.farm.smtp_servers import ServerStats, Tarpit
from tests.reliability.system import (
    PROCESSES,
    FarmAddress,
    MailSystem,
    PostgresCluster,
    migrate_template,
    real_messages,
)
from tests.verification.conftest import KNOWN, SCENARIO_RECORDS, SCENARIO_SERVERS

# Mail servers that pause before each reply, and many domains they serve (bulk<n>.test on
# BULK_SERVERS[n % 4]): a bulk job across them lasts long enough to be hit by a fault in the
# middle (test_job_faults.py).
BULK_SERVERS = tuple(ServerSpec(f"mx.bulk{k}.test", f"127.0.0.{22 + k}", "normal", known=KNOWN,
                                full=("fullbox",), disabled=("gone",), reply_delay=0.02)
                     for k in range(4))  # fmt: skip
BULK_DOMAINS = tuple(f"bulk{n}.test" for n in range(40))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


class RcptLog:
    """Every RCPT TO the farm's servers saw, per address (the farm itself only counts them)."""

    def __init__(self) -> None:
        self.addresses: Counter = Counter()

    def attach(self, behaviour) -> None:
        original = behaviour.handle_RCPT

        async def counted(server, session, envelope, address, rcpt_options):
            self.addresses[address.lower()] += 1
            return await original(server, session, envelope, address, rcpt_options)

        # aiosmtpd looks the hooks up on the handler for every new connection.
        behaviour.handle_RCPT = counted


@dataclass
class VerificationFarm:
    farm: Farm
    rcpts: RcptLog
    tarpit: type[Tarpit]

    @property
    def address(self) -> FarmAddress:
        return FarmAddress(self.farm.nameserver, self.farm.port)

    def stats(self, mx_host: str) -> ServerStats:
        ip = next(s.ip for s in self.farm.spec.servers if s.name == mx_host)
        return self.farm.stats[ip]

    def reset(self) -> None:
        self.farm.reset()
        self.rcpts.addresses.clear()
        self.tarpit.hold()


@pytest.fixture(scope="session")
def verification_farm() -> Iterator[VerificationFarm]:
    """tests/verification's farm (normal, greylisting, tarpit, dropping servers, ...) in a thread
    of the test process, reached by the workers over loopback."""
    bulk_records = {domain: {"MX": [f"10 {BULK_SERVERS[n % len(BULK_SERVERS)].name}."]}
                    for n, domain in enumerate(BULK_DOMAINS)}  # fmt: skip
    farm = Farm(FarmSpec(servers=[*SCENARIO_SERVERS, *BULK_SERVERS],
                         records={**SCENARIO_RECORDS, **bulk_records}))  # fmt: skip
    farm.start_in_thread()
    Tarpit.loop = farm._loop
    rcpts = RcptLog()
    for behaviour in farm.behaviours.values():
        rcpts.attach(behaviour)
    yield VerificationFarm(farm, rcpts, Tarpit)
    farm.stop_thread()


@pytest.fixture(scope="session")
def reliability_dir(request) -> Iterator[Path]:
    """Where the servers and processes keep their data and logs: under the test data directory
    (pytest's own temporary directories are pruned by any other pytest run on the machine).
    Kept after a failure, for a look at the logs."""
    base = Path(
        os.environ.get("MAILSCORE_TEST_DATA_DIR") or settings.BASE_DIR / ".devdata" / "test"
    )
    (base / "reliability").mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="run-", dir=base / "reliability"))
    failures = request.session.testsfailed
    yield directory
    if request.session.testsfailed == failures:
        shutil.rmtree(directory, ignore_errors=True)


def _cluster(directory: Path) -> tuple[PostgresCluster, str]:
    cluster = PostgresCluster(directory)
    cluster.initialize()
    cluster.start()
    try:
        return cluster, migrate_template(cluster, directory)
    except BaseException:
        cluster.shutdown()
        raise


@pytest.fixture(scope="session")
def postgres_cluster(reliability_dir) -> Iterator[tuple[PostgresCluster, str]]:
    """One cluster for the systems that do not stop PostgreSQL, with a migrated template."""
    cluster, template = _cluster(reliability_dir / "postgres")
    yield cluster, template
    cluster.shutdown()


@pytest.fixture(scope="session")
def mail_sources() -> list[bytes]:
    return real_messages(Path(settings.MAILSCORE_SPAM_CORPUS))


class Systems:
    """Starts systems for a test or a module, and stops every one of them."""

    def __init__(self, request, farm: VerificationFarm, directory: Path) -> None:
        self.request, self.farm, self.directory = request, farm, directory
        self.started: list[tuple[MailSystem, PostgresCluster | None]] = []

    def start(self, *, environment: dict[str, str] | None = None,
              per_process: dict[str, dict[str, str]] | None = None,
              processes: tuple[str, ...] = PROCESSES, own_cluster: bool = False,
              persist_redis: bool = False) -> MailSystem:  # fmt: skip
        """A running mailscore. own_cluster gives it a PostgreSQL cluster of its own (for a
        test that stops the server); persist_redis keeps Redis's data across its restarts."""
        directory = self.directory / f"{self.request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
        if own_cluster:
            cluster, template = _cluster(directory / "postgres")
        else:
            cluster, template = self.request.getfixturevalue("postgres_cluster")
        system = MailSystem(directory, cluster, f"mailscore_{uuid.uuid4().hex[:10]}",
                            self.farm.address, environment=environment,
                            per_process=per_process, persist_redis=persist_redis)  # fmt: skip
        self.started.append((system, cluster if own_cluster else None))
        self.farm.reset()
        system.prepare(template)
        system.start(processes)
        return system

    def stop_all(self, *, show_logs: bool) -> None:
        for system, own_cluster in self.started:
            if show_logs:
                sys.stderr.write(f"\n===== {system.directory} =====\n{system.report(60)}\n")
            system.stop()
            if own_cluster is not None:
                own_cluster.shutdown()


@pytest.fixture
def start_system(
    request, verification_farm, reliability_dir
) -> Iterator[Callable[..., MailSystem]]:
    """start_system(environment=..., per_process=..., processes=..., own_cluster=False)."""
    systems = Systems(request, verification_farm, reliability_dir)
    yield systems.start
    failed = any(getattr(getattr(request.node, f"report_{when}", None), "failed", False)
                 for when in ("setup", "call"))  # fmt: skip
    systems.stop_all(show_logs=failed)


@pytest.fixture(scope="module")
def start_module_system(request, verification_farm, reliability_dir):
    """start_system for systems that a module's tests share."""
    systems = Systems(request, verification_farm, reliability_dir)
    failures = request.session.testsfailed
    yield systems.start
    systems.stop_all(show_logs=request.session.testsfailed > failures)
