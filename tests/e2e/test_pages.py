"""The dev inbox, the dashboard and /docs in a real headless Chromium, against a real
server: live messages without reload, one-click verification, charts drawn from data,
and not one Content-Security-Policy violation. Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from otpgate import client as og
from tests.e2e import server as srv
from tests.e2e.browser import artifact, chromium
from tests.e2e.test_client import code_for

LIVE_WITHIN_MS = 2000


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[srv.Server]:
    base = tmp_path_factory.mktemp("pages")
    server = srv.start(base / "var", base / "server.log",
                       env={"OTPGATE_POLICY_RESEND_COOLDOWN": "0"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as opened:
        yield opened


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    problems: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    opened.on("console", watch)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    context.close()
    assert problems == [], problems


def test_a_request_over_http_shows_in_the_open_inbox_and_verifies_in_one_click(
    live: srv.Server, page: Page
) -> None:
    page.goto(live.url + "/dev/inbox")
    expect(page.locator("#status")).to_have_text("live")
    with og.Client(live.url) as otp:
        sent = otp.request_otp("+14155550190", purpose="inbox")
        card = page.locator(f'article.message[data-otp-id="{sent.id}"]')
        expect(card).to_be_visible(timeout=LIVE_WITHIN_MS)
        code = code_for(live, sent.id)
        expect(card.locator("mark.code")).to_have_text(code)
        card.locator("button.verify").click()
        expect(card.locator('.result[data-status="approved"]')).to_be_visible()
        assert otp.get(sent.id).status == "approved"
        for to, channel in (("+14155550191", "whatsapp"), ("+14155550192", "voice")):
            other = otp.request_otp(to, channel=channel)
            expect(page.locator(f'article.message[data-otp-id="{other.id}"] .channel')
                   ).to_have_text(channel, timeout=LIVE_WITHIN_MS)

    page.fill("#try input[name=to]", "jane@example.com")
    page.select_option("#try select[name=channel]", "email")
    page.click("#try button[type=submit]")
    expect(page.locator("#try-result")).to_contain_text("pending")
    mail = page.locator('article.message[data-to="jane@example.com"]')
    expect(mail).to_be_visible(timeout=LIVE_WITHIN_MS)
    page.click('#threads li[data-to="jane@example.com"]')
    expect(page.locator("article.message")).to_have_count(1)
    mail.locator("button.verify").click()
    expect(mail.locator('.result[data-status="approved"]')).to_be_visible()
    page.click('#threads li[data-to=""]')
    assert page.locator("#threads li").count() == 5
    page.screenshot(path=artifact("inbox.png"), full_page=True)


def test_the_dashboard_charts_render_with_data(live: srv.Server, page: Page) -> None:
    with og.Client(live.url) as otp:
        for n in range(4):
            sent = otp.request_otp(f"+4474001234{n:02d}", purpose="dash")
            if n % 2 == 0:
                otp.verify(sent.id, code_for(live, sent.id))
    page.goto(live.url + "/dashboard")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    with og.Client(live.url) as otp:  # traffic over three of the page's reads
        for n in range(24):
            otp.request_otp(f"+336123{n:05d}", purpose="dash")
            page.wait_for_timeout(250)
    page.wait_for_function(
        "document.querySelector('#rps path.line')?.dataset.points >= 3", timeout=10_000)
    expect(page.locator("#sends rect.bar").first).to_be_visible()
    expect(page.locator("#queues rect.bar").first).to_be_visible()
    conversion = page.locator("#conversion text")
    expect(conversion.filter(has_text="GB")).to_have_count(1)
    expect(conversion.filter(has_text="50 % of 4")).to_have_count(1)
    expect(conversion.filter(has_text="0 % of 24")).to_have_count(1)
    expect(page.locator("#breakers .breaker.closed")).to_have_text("capture: closed")
    expect(page.locator("#prefixes text")).to_have_text("no prefix blocked")
    page.screenshot(path=artifact("dashboard.png"), full_page=True)


def test_the_docs_render_the_openapi_document_from_packaged_assets(
    live: srv.Server, page: Page
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(live.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("otpgate")
    expect(page.locator("#operations-otp-requestOtp, [id$=requestOtp]").first).to_be_visible()
    assert all(url.startswith(live.url) for url in requested), requested
    page.screenshot(path=artifact("docs.png"))


def test_the_pages_forbid_framing_sniffing_and_caching(live: srv.Server) -> None:
    for path in ("/dev/inbox", "/dashboard", "/docs"):
        headers = httpx.get(live.url + path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self';" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
    asset = httpx.get(live.url + "/_static/inbox.js")
    assert asset.status_code == 200 and asset.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(live.url + "/_static/../static/nothing.js").status_code == 404


def test_screenshots_are_kept_as_artifacts() -> None:
    for name in ("inbox.png", "dashboard.png"):
        shot = artifact(name)
        assert shot.exists() and shot.stat().st_size > 10_000, shot
    assert Path(artifact("docs.png")).exists()
