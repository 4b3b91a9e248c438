"""manage.py verify, in-process for every farm scenario and as a real process for exit codes."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from tests.verification.test_farm_scenarios import SCENARIOS

# The command reads mail evidence from the database (apps/verification/evidence.py).
pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def run_json(*args) -> list[dict]:
    out = StringIO()
    call_command("verify", "--json", *args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize(("address", "verdict", "reason"), SCENARIOS)
def test_every_farm_scenario(farm_settings, address, verdict, reason):
    [result] = run_json(address)
    assert (result["address"], result["verdict"], result["reason"]) == (address, verdict, reason)


def test_greylisted_address_with_a_wait_budget(farm_settings):
    [result] = run_json("--greylist-wait", "5", "alice@greylist.test")
    assert (result["verdict"], result["reason"]) == ("deliverable", "ok")


def test_results_come_in_input_order_one_object_per_line(farm_settings):
    addresses = [a for a, _, _ in SCENARIOS]
    results = run_json(*addresses)
    assert [r["address"] for r in results] == addresses
    assert all({"verdict", "reason", "score", "smtp", "mx", "timings"} <= set(r) for r in results)


def test_no_smtp_and_a_file_of_addresses(farm_settings, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("alice@normal.test\nx@nullmx.test\n")
    results = run_json("--no-smtp", "--file", str(listing), str(listing))
    assert [(r["reason"]) for r in results] == ["smtp_skipped", "null_mx"] * 2


def test_table_output(farm_settings):
    out = StringIO()
    call_command("verify", "alice@normal.test", "alice@gmial.com", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:4] == ["ADDRESS", "VERDICT", "REASON", "SCORE"]
    assert lines[1].split()[:4] == ["alice@normal.test", "deliverable", "ok", "95"]
    assert "did you mean alice@gmail.com?" in lines[2]


def test_usage_errors_in_process(farm_settings):
    with pytest.raises(CommandError, match="No addresses to verify"):
        call_command("verify", stdout=StringIO())
    with pytest.raises(CommandError, match="0 or more"):
        call_command("verify", "--greylist-wait", "-1", "a@b.test", stdout=StringIO())
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("verify", "--file", "/nonexistent/list.txt", stdout=StringIO())


def cli(*args, stdin: bytes = b"", farm=None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailscore.settings.test",
        "DATABASE_URL": settings.DATABASE_URL,
        "REDIS_URL": settings.REDIS_URL,
        "MAILSCORE_ALLOW_SPECIAL_USE_DOMAINS": "1",
        "MAILSCORE_DNS_TIMEOUT": "1",
        "MAILSCORE_SMTP_PER_HOST_RATE": "0",
    }
    if farm is not None:
        env["MAILSCORE_DNS_NAMESERVERS"] = farm.nameserver
        env["MAILSCORE_SMTP_PORT"] = str(farm.port)
        env["MAILSCORE_SMTP_ALLOWED_NETWORKS"] = "127.0.0.0/8"  # the farm is on loopback
    return subprocess.run(
        [sys.executable, "manage.py", "verify", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_process_reads_standard_input_with_bad_lines(farm, redis_client):
    farm.reset()
    hostile = b"\n".join(
        [
            b"alice@normal.test",
            b"",  # an empty line
            b"x" * 10_000,  # a 10,000-character string
            b"bell\x07@normal.test",  # a control character
            b"caf\xe9@normal.test",  # Latin-1, not UTF-8
            b"\xff\xfe\xfd",
        ]
    )
    proc = cli("--json", "--no-cache", "-", stdin=hostile, farm=farm)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    results = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(results) == 6
    assert (results[0]["verdict"], results[0]["reason"]) == ("deliverable", "ok"), results[0]
    for result in results[1:]:
        assert (result["verdict"], result["reason"]) == ("undeliverable", "invalid_syntax")
        assert result["syntax"]["error"]
    assert results[4]["address"] == "caf\\xe9@normal.test"


def test_process_usage_errors_exit_2_without_a_traceback(farm):
    for args in ([], ["--greylist-wait", "soon", "a@b.test"], ["--no-such-flag", "a@b.test"]):
        proc = cli(*args, farm=farm)
        assert proc.returncode == 2, (args, proc.stderr)
        assert b"Traceback" not in proc.stderr
        assert proc.stderr.strip()


def test_process_table_for_a_file_argument(farm, tmp_path, redis_client):
    farm.reset()
    listing = tmp_path / "addresses"
    listing.write_text("bob@normal.test\nnobody@normal.test\n")
    proc = cli(str(listing), farm=farm)
    assert proc.returncode == 0, proc.stderr.decode()
    rows = proc.stdout.decode().splitlines()[1:]
    assert [row.split()[1:3] for row in rows] == [
        ["deliverable", "ok"],
        ["undeliverable", "mailbox_not_found"],
    ]
