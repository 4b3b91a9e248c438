"""A reviewer's day in the admin, in a real Chromium: the queue, a message, corrections,
feedback and retraining; and a message's HTML, which must never load or run anything."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.urls import reverse
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from apps.review.models import Feedback, ReplyExample
from apps.triage.models import ModelVersion
from tests.browser.conftest import screenshot, wait_for
from tests.browser.mail import DOUBLE_CHARGE, OUTAGE, PRICING, Mail, triage

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("team_configuration"),
]

APPROVED_REPLY = (
    "Hello Dana,\n\nWe are on it: our on-call engineer is looking at the checkout errors now "
    "and will call you back within the hour.\n\nThe Support Team"
)


def queue_rows(browser) -> list:
    return browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")


def open_queue(browser, url: str) -> None:
    browser.get(url)
    wait_for(browser, lambda b: b.find_elements(By.ID, "level-counts"), "the queue's counts")


def level_count(browser, level: str) -> int:
    link = browser.find_element(By.CSS_SELECTOR, f"#level-counts a[data-level={level}]")
    return int(link.find_element(By.CLASS_NAME, "count").text)


def press(browser, action: str) -> None:
    """Press one of the message page's buttons and wait for the page it leads to."""
    old_page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, f"button[name=action][value={action}]").click()
    wait_for(browser, lambda b: not is_attached(old_page), f"the page after {action!r}")
    wait_for(browser, lambda b: b.find_elements(By.ID, "review-form"), "the message page")


def is_attached(element) -> bool:
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return False
    except WebDriverException as error:
        # Asked while the next page replaces it, ChromeDriver can answer that the old page's
        # node left the document as an unknown error rather than as a stale reference.
        if "does not belong to the document" in (error.msg or ""):
            return False
        raise
    return True


def notices(browser) -> str:
    return " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, "ul.messagelist li"))


def test_login_and_queue(logged_in, live_server):
    triage([PRICING, DOUBLE_CHARGE, OUTAGE])
    browser = logged_in
    open_queue(browser, live_server.url + reverse("admin:inbox_message_changelist"))
    rows = queue_rows(browser)
    assert len(rows) == 3
    assert OUTAGE.subject in rows[0].text, "the P0 message leads the queue"
    assert level_count(browser, "P0") == 1


def test_a_reviewers_day(logged_in, live_server, reviewer):
    messages = {m.subject: m for m in triage([PRICING, DOUBLE_CHARGE, OUTAGE])}
    outage = messages[OUTAGE.subject]
    assert outage.priority == "P0", outage.priority_result
    browser = logged_in

    # The queue: what is waiting, most urgent first.
    open_queue(browser, live_server.url + reverse("admin:inbox_message_changelist"))
    assert level_count(browser, "P0") == 1
    assert level_count(browser, "P2") == 2
    screenshot(browser, "queue.png")

    # Only the P0s, from their count's link.
    browser.find_element(By.CSS_SELECTOR, "#level-counts a[data-level=P0]").click()
    wait_for(browser, lambda b: "priority=P0" in b.current_url, "the P0 filter in the address")
    rows = queue_rows(browser)
    assert [OUTAGE.subject in row.text for row in rows] == [True]

    # The message's page, from its subject.
    browser.find_element(By.LINK_TEXT, OUTAGE.subject).click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "review-form"), "the message page")
    assert "Our production site has been down" in browser.find_element(By.ID, "new-text").text
    assert "P0" in browser.find_element(By.ID, "result-priority").text
    category = Select(browser.find_element(By.NAME, "category"))
    model_category = category.first_selected_option.get_attribute("value")
    assert model_category == outage.category

    # Correct the category.
    corrected = "support" if model_category != "support" else "incident"
    category.select_by_value(corrected)
    press(browser, "save")
    assert f"category {model_category} -> {corrected}" in notices(browser)
    selected = Select(browser.find_element(By.NAME, "category")).first_selected_option
    assert selected.get_attribute("value") == corrected

    # Edit the draft and approve it.
    draft = browser.find_element(By.NAME, "draft")
    assert draft.get_attribute("value").strip(), "the chain drafted a reply"
    draft.clear()
    draft.send_keys(APPROVED_REPLY)
    press(browser, "approve_draft")
    assert "draft approved" in notices(browser)
    assert browser.find_element(By.NAME, "draft").get_attribute("value") == APPROVED_REPLY

    # Assign it to oneself.
    Select(browser.find_element(By.NAME, "assignee")).select_by_value(str(reviewer.pk))
    screenshot(browser, "message.png")
    press(browser, "assign")
    assert f"assigned to {reviewer.username}" in notices(browser)

    # The page's history lists each decision; the database keeps them as feedback.
    history = browser.find_element(By.ID, "feedback-history").text
    for words in (f"category {model_category} -> {corrected}", "draft approved",
                  f"assigned to {reviewer.username}"):  # fmt: skip
        assert words in history
    feedback = list(Feedback.objects.filter(message_id=outage.id).order_by("id"))
    assert [f.user_id for f in feedback] == [reviewer.pk] * 3
    assert (feedback[0].model_category, feedback[0].category) == (model_category, corrected)
    assert feedback[1].draft_approved and feedback[1].draft == APPROVED_REPLY
    assert feedback[2].assignee_id == reviewer.pk
    assert ReplyExample.objects.get(message_id=outage.id).reply == APPROVED_REPLY

    # Retraining learns from it, and the model versions page shows the new active version.
    versions_url = live_server.url + reverse("admin:triage_modelversion_changelist")
    browser.get(versions_url)
    wait_for(browser, lambda b: b.find_elements(By.ID, "changelist"), "the model versions")
    assert not browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    output = io.StringIO()
    call_command("retrain", "--force", stdout=output)
    version = ModelVersion.objects.get(active=True)
    assert f"{version.name} is active" in output.getvalue()
    assert version.feedback_count == 3 and len(version.replies) == 1
    browser.get(versions_url)
    rows = wait_for(
        browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#result_list tbody tr"), "a version"
    )
    assert len(rows) == 1 and version.name in rows[0].text
    active = rows[0].find_element(By.CSS_SELECTOR, "td.field-active img")
    assert active.get_attribute("alt") == "True"


class PixelServer:
    """An HTTP server on loopback that answers everything with a 1x1 GIF and notes each path
    asked for: a message's remote image, if the page ever loaded it, shows up here."""

    GIF = bytes.fromhex(
        "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
    )

    def __init__(self) -> None:
        self.paths: list[str] = []
        # What /message.html serves: the message's HTML as a page of its own.
        self.page = b""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                if self.path == "/message.html":
                    body, content_type = server.page, "text/html; charset=utf-8"
                else:
                    body, content_type = PixelServer.GIF, "image/gif"
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pixel_server():
    server = PixelServer()
    yield server
    server.close()


def test_a_messages_html_never_loads_or_runs_anything(logged_in, live_server, pixel_server):
    html = (
        "<html><head><title>Newsletter</title></head><body>"
        "<p>Your March statement is ready.</p>"
        "<script>document.title = 'script ran';</script>"
        f'<img src="{pixel_server.url}/pixel.gif" width="1" height="1">'
        f'<iframe src="{pixel_server.url}/frame.html"></iframe>'
        "</body></html>"
    )
    statement = Mail(
        subject="Your March statement",
        body="",
        html=html,
        sender="Billing <statements@vendor.test>",
    )
    pixel_server.page = html.encode()
    (message,) = triage([statement])
    browser = logged_in
    browser.get(live_server.url + reverse("admin:inbox_message_change", args=[message.id]))
    wait_for(browser, lambda b: b.find_elements(By.ID, "new-text"), "the message's text")
    wait_for(
        browser,
        lambda b: b.execute_script("return document.readyState") == "complete",
        "the page finished loading",
    )

    assert "Your March statement is ready." in browser.find_element(By.ID, "new-text").text
    assert browser.title.startswith("Your March statement"), browser.title
    assert pixel_server.paths == []

    # The same HTML opened as a page of its own does both: what was looked for above would have
    # been seen.
    browser.get(f"{pixel_server.url}/message.html")
    wait_for(browser, lambda b: b.title == "script ran", "the control page's script")
    assert "/pixel.gif" in pixel_server.paths
