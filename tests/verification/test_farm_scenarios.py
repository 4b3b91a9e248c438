"""The engine against the local farm: one scenario per behaviour real mail servers show."""

import asyncio

import pytest

from apps.verification.engine.cache import MemoryCache
from apps.verification.engine.verifier import Verifier

SCENARIOS = [
    # address, verdict, reason
    ("alice@normal.test", "deliverable", "ok"),
    ("nobody@normal.test", "undeliverable", "mailbox_not_found"),
    ("fullbox@normal.test", "risky", "mailbox_full"),
    ("gone@normal.test", "undeliverable", "mailbox_disabled"),
    ("support@normal.test", "risky", "role_account"),
    ("anyone@catchall.test", "risky", "catch_all"),
    ("alice@greylist.test", "unknown", "greylisted"),  # no wait budget: not a verdict
    ("alice@onercpt.test", "deliverable", "ok"),
    ("nobody@onercpt.test", "undeliverable", "mailbox_not_found"),
    ("alice@tarpit.test", "unknown", "timeout"),
    ("alice@dropper.test", "unknown", "connection_failed"),
    ("alice@tls.test", "deliverable", "ok"),
    ("alice@blocked.test", "unknown", "blocked"),
    ("alice@slow.test", "deliverable", "ok"),
    ("alice@failover.test", "deliverable", "ok"),
    ("alice@unreachable.test", "unknown", "connection_failed"),
    ("x@nullmx.test", "undeliverable", "null_mx"),
    ("alice@implicit.test", "deliverable", "ok"),
    ("x@nomail.test", "undeliverable", "no_mail_server"),
    ("x@danglingmx.test", "undeliverable", "no_mail_server"),
    ("x@servfail.test", "unknown", "dns_error"),
    ("x@dnstimeout.test", "unknown", "timeout"),
    ("x@no-such-domain.test", "undeliverable", "no_such_domain"),
    ("someone@mailinator.com", "risky", "disposable"),
    ("not an address", "undeliverable", "invalid_syntax"),
]


@pytest.mark.parametrize(("address", "verdict", "reason"), SCENARIOS)
def test_scenario(make_verifier, address, verdict, reason):
    result = asyncio.run(make_verifier().verify(address))
    assert (str(result.verdict), str(result.reason)) == (verdict, reason), result.smtp.error


def test_all_scenarios_at_once_give_the_same_answers(make_verifier):
    results = asyncio.run(make_verifier().verify_many([a for a, _, _ in SCENARIOS]))
    assert [(r.address, str(r.verdict), str(r.reason)) for r in results] == SCENARIOS


def test_unknown_is_never_undeliverable(make_verifier):
    results = asyncio.run(make_verifier().verify_many([a for a, _, _ in SCENARIOS]))
    for result in results:
        if result.smtp.reply_kind in ("timeout", "connection_failed", "blocked", "greylisted"):
            assert str(result.verdict) == "unknown"


def test_nothing_is_ever_delivered(farm, make_verifier):
    asyncio.run(make_verifier().verify_many([a for a, _, _ in SCENARIOS]))
    assert all(stats.data_commands == 0 for stats in farm.stats.values())


def test_greylisted_address_is_retried_within_the_wait_budget(make_verifier):
    result = asyncio.run(make_verifier().verify("bob@greylist.test", greylist_wait=5))
    assert (str(result.verdict), str(result.reason)) == ("deliverable", "ok")
    assert result.smtp.attempts >= 2


def test_greylisting_past_the_budget_is_unknown_with_a_retry_hint(make_verifier):
    verifier = make_verifier(greylist_initial_delay=30)
    result = asyncio.run(verifier.verify("carol@greylist.test", greylist_wait=0.2))
    assert (str(result.verdict), str(result.reason)) == ("unknown", "greylisted")
    assert result.smtp.retry_after == 60  # the next delay in the doubling sequence


def test_deliverable_result_details(make_verifier):
    result = asyncio.run(make_verifier().verify("Alice@Normal.TEST"))
    data = result.to_dict()
    assert data["address"] == "Alice@Normal.TEST"
    assert data["normalized"] == "Alice@normal.test"
    assert data["mx"]["records"][0]["host"] == "mx.normal.test"
    smtp = data["smtp"]
    assert smtp["can_connect"] and smtp["is_deliverable"] and smtp["is_catch_all"] is False
    commands = [step["command"].split()[0] for step in smtp["steps"]]
    assert commands[:4] == ["CONNECT", "EHLO", "MAIL", "RCPT"]
    assert "DATA" not in commands
    assert {"syntax_ms", "dns_ms", "smtp_ms", "total_ms"} <= set(data["timings"])
    assert 90 <= data["score"] <= 100


def test_starttls_is_used_when_offered(farm, make_verifier):
    result = asyncio.run(make_verifier().verify("alice@tls.test"))
    assert result.smtp.tls is True
    assert "STARTTLS" in [step.command for step in result.smtp.steps]


def test_blocked_is_about_our_ip_not_the_mailbox(make_verifier):
    """The same server accepts the same address from an address it does not block."""
    blocked = asyncio.run(make_verifier().verify("alice@blocked.test"))
    assert str(blocked.reason) == "blocked"
    allowed = asyncio.run(
        make_verifier(smtp_source_address="127.0.0.2").verify("alice@blocked.test")
    )
    assert str(allowed.reason) == "ok"


def test_slow_server_within_command_timeout_and_past_it(make_verifier):
    assert str(asyncio.run(make_verifier().verify("bob@slow.test")).reason) == "ok"
    late = asyncio.run(make_verifier(command_timeout=0.1).verify("carol@slow.test"))
    assert (str(late.verdict), str(late.reason)) == ("unknown", "timeout")


def test_tarpit_costs_at_most_the_connect_timeout(make_verifier):
    result = asyncio.run(make_verifier(connect_timeout=0.5).verify("bob@tarpit.test"))
    assert str(result.reason) == "timeout"
    assert result.timings["smtp_ms"] < 2000


def test_failover_goes_to_the_next_mx(make_verifier):
    result = asyncio.run(make_verifier().verify("bob@failover.test"))
    assert result.smtp.host == "mx2.failover.test"
    connects = [s for s in result.smtp.steps if s.command.startswith("CONNECT")]
    assert connects[0].command.startswith("CONNECT mx1.failover.test") and connects[0].code is None


def test_one_recipient_per_session_server_gets_each_address_on_a_fresh_connection(make_verifier):
    results = asyncio.run(
        make_verifier(per_host_concurrency=1).verify_many(
            ["alice@onercpt.test", "bob@onercpt.test", "nobody@onercpt.test"]
        )
    )
    assert [str(r.reason) for r in results] == ["ok", "ok", "mailbox_not_found"]
    assert results[0].smtp.is_catch_all is False


def test_connections_are_reused_within_a_domain(farm, make_verifier):
    farm.reset_stats()
    addresses = [f"{name}@normal.test" for name in ("alice", "bob", "carol", "nobody", "x1", "x2")]
    results = asyncio.run(make_verifier(per_host_concurrency=1).verify_many(addresses))
    assert farm.stats["127.0.0.10"].connections == 1
    assert [r.smtp.connection for r in results] == ["new"] + ["reused"] * 5
    assert "RSET" in [step.command for step in results[1].smtp.steps]


def test_per_server_concurrency_limit_holds(farm, make_verifier):
    farm.reset_stats()
    addresses = [f"user{i}@normal.test" for i in range(40)] + [
        f"user{i}@gmail.com" for i in range(40)
    ]
    asyncio.run(make_verifier(per_host_concurrency=2).verify_many(addresses))
    # normal.test and gmail.com share one MX: the limit is per server, not per domain.
    assert farm.stats["127.0.0.10"].max_concurrency == 2


def test_per_server_rate_limit_holds_at_the_server(farm, make_verifier):
    farm.reset_stats()
    rate, burst = 10.0, 2
    addresses = [f"user{i}@normal.test" for i in range(12)]
    asyncio.run(make_verifier(per_host_rate=rate, per_host_burst=burst).verify_many(addresses))
    times = farm.stats["127.0.0.10"].rcpt_times
    assert len(times) >= 12
    # Token-bucket conformance: any run of n probes spans at least (n - burst) / rate seconds.
    # The farm stamps a probe when its loop gets to it; on a loaded machine that loop can stall
    # for tens of milliseconds and stamp two probes sent 100 ms apart together. The slack covers
    # such a stall; a missing limit still fails, as twelve probes would arrive within a few
    # milliseconds against the 1 s the run must span.
    slack = 0.1
    for i in range(len(times)):
        for j in range(i + burst, len(times)):
            assert times[j] - times[i] >= (j - i + 1 - burst) / rate - slack


def test_verdicts_come_as_each_address_is_answered_not_when_the_domain_is_done(farm, make_verifier):
    """A server known to refuse unknown mailboxes answers for good: each verdict goes out at
    once, while the domain's other addresses still wait for their tokens."""
    farm.reset_stats()
    addresses = [f"user{i}@normal.test" for i in range(10)] + ["alice@normal.test"]
    probes_sent_at_each_verdict = []
    asyncio.run(
        make_verifier(per_host_rate=10.0, per_host_burst=2).verify_many(
            addresses,
            on_result=lambda i, r: probes_sent_at_each_verdict.append(
                farm.stats["127.0.0.10"].rcpts
            ),
        )
    )
    total = farm.stats["127.0.0.10"].rcpts
    assert total >= len(addresses)
    assert len(probes_sent_at_each_verdict) == len(addresses)
    assert probes_sent_at_each_verdict[0] < total / 2


def test_duplicates_are_probed_once(farm, make_verifier):
    farm.reset_stats()
    results = asyncio.run(
        make_verifier().verify_many(["dave@normal.test", "DAVE@normal.test", "dave@normal.test"])
    )
    assert {str(r.reason) for r in results} == {"mailbox_not_found"}
    assert [r.address for r in results] == [
        "dave@normal.test",
        "DAVE@normal.test",
        "dave@normal.test",
    ]
    assert farm.stats["127.0.0.10"].rcpts == 1


def test_address_cache_answers_the_second_time(farm, farm_config):
    verifier = Verifier(farm_config(), cache=MemoryCache())
    first = asyncio.run(verifier.verify("alice@normal.test"))
    farm.reset_stats()
    second = asyncio.run(verifier.verify("alice@normal.test"))
    assert not first.cached and second.cached
    assert str(second.reason) == "ok"
    assert farm.stats["127.0.0.10"].connections == 0


def test_catch_all_status_is_cached_per_domain(farm, farm_config):
    verifier = Verifier(farm_config(), cache=MemoryCache())
    asyncio.run(verifier.verify("one@catchall.test"))
    farm.reset_stats()
    result = asyncio.run(verifier.verify("two@catchall.test"))
    assert str(result.reason) == "catch_all"
    assert farm.stats["127.0.0.11"].rcpts == 1  # no second probe


def test_no_smtp_stops_after_dns(farm, make_verifier):
    farm.reset_stats()
    result = asyncio.run(make_verifier().verify("alice@normal.test", smtp=False))
    assert (str(result.verdict), str(result.reason)) == ("unknown", "smtp_skipped")
    assert farm.stats["127.0.0.10"].connections == 0


def test_operator_lists(make_verifier):
    verifier = make_verifier(
        deny_domains=("normal.test",), allow_addresses=("nobody@catchall.test",)
    )
    denied, allowed = asyncio.run(
        verifier.verify_many(["alice@normal.test", "nobody@catchall.test"])
    )
    assert (str(denied.verdict), str(denied.reason)) == ("undeliverable", "deny_listed")
    assert (str(allowed.verdict), str(allowed.reason)) == ("deliverable", "allow_listed")


def test_free_provider_flag_and_typo_suggestion(make_verifier):
    free, typo = asyncio.run(make_verifier().verify_many(["alice@gmail.com", "alice@gmial.com"]))
    assert free.is_free and str(free.reason) == "ok"
    assert typo.suggestion == "alice@gmail.com"


def test_refreshed_disposable_file_is_picked_up(tmp_path, make_verifier):
    extra = tmp_path / "disposable.txt"
    extra.write_text("# local additions\nnormal.test\n")
    result = asyncio.run(
        make_verifier(disposable_extra_file=str(extra)).verify("alice@normal.test")
    )
    assert str(result.reason) == "disposable"
