"""The app under its Content-Security-Policy, in headless Chromium (issue #12, item 9): sign up
and add a note with no violation reported, while a script injected into the page is refused."""

from __future__ import annotations

import pytest

from services import sign_up

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every violation the page sees, as the browser reports it to the page itself.
_RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.effectiveDirective} ${e.blockedURI} ${e.sample}`);
});
"""


@pytest.fixture
def app_url(serve) -> str:  # type: ignore[no-untyped-def]
    server = serve()
    server.wait_healthy()
    return f"http://localhost:{server.port}"


def test_the_app_works_under_its_csp(browser, app_url: str) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    context.add_init_script(_RECORD_VIOLATIONS)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))

    response = page.goto(f"{app_url}/signup")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-eval' 'sha256-" in csp
    assert response.headers["x-frame-options"] == "DENY"

    sign_up(page, app_url, "dora", "correct horse battery")
    page.locator("#note-body").fill("a note under a strict policy")
    page.locator("#note-submit").click()
    page.locator(".note-body").filter(has_text="a note under a strict policy").wait_for()
    page.goto(f"{app_url}/status")
    page.locator("#health-status").filter(has_text="healthy (200)").wait_for()

    assert page.evaluate("window.__violations") == []
    assert not [m for m in console if "Content Security Policy" in m], console

    # The policy is enforced, not merely sent: an inline script the export does not hold is
    # refused, and reported.
    ran = page.evaluate(
        """() => {
          const s = document.createElement("script");
          s.textContent = "window.__injected = true";
          document.body.appendChild(s);
          return window.__injected === true;
        }"""
    )
    assert ran is False
    page.wait_for_function("window.__violations.length > 0")
    context.close()
