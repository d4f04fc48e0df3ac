"""End to end in headless Chromium (Debian's), driven by Playwright, against `working serve`."""

from __future__ import annotations

import pytest

from services import add_note, sign_up
from working.notes import NOTE_MAX

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def app_url(serve, database_env: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    server = serve(**database_env)
    server.wait_healthy()
    return f"http://localhost:{server.port}"


def _note_bodies(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.locator(".note-body").all_inner_texts()


def test_sign_up_notes_reload_log_out_and_isolation(browser, app_url: str) -> None:  # type: ignore[no-untyped-def]
    alice = browser.new_context()
    page = alice.new_page()
    sign_up(page, app_url, "alice", "correct horse battery")
    add_note(page, "first note")
    add_note(page, "second note")
    assert _note_bodies(page) == ["second note", "first note"]

    page.reload()
    page.locator(".note").nth(1).wait_for()
    assert _note_bodies(page) == ["second note", "first note"]
    assert page.locator("#current-user").inner_text() == "alice"

    # Too long: refused with a message that says so, and nothing is stored.
    page.locator("#note-body").fill("x" * (NOTE_MAX + 1))
    page.locator("#note-submit").click()
    error = page.locator("#note-error")
    error.wait_for()
    assert f"at most {NOTE_MAX} characters" in error.inner_text()
    assert len(_note_bodies(page)) == 2

    page.locator("#logout").click()
    page.wait_for_url(f"{app_url}/login")
    page.goto(f"{app_url}/notes")
    page.wait_for_url(f"{app_url}/login")  # the session is gone, not just hidden

    bob = browser.new_context().new_page()
    sign_up(bob, app_url, "bob", "another good password")
    # Adding a note reads the account's list back from the server: once Bob's note shows, the
    # list on his page is the server's whole answer for him, and Alice's notes are not in it.
    bob.locator("#note-body").fill("bob's note")
    bob.locator("#note-submit").click()
    bob.locator(".note-body").filter(has_text="bob's note").wait_for()
    assert _note_bodies(bob) == ["bob's note"]
    bob.context.close()

    page.locator("#username").fill("alice")
    page.locator("#password").fill("correct horse battery")
    page.locator("#login-form-submit").click()
    page.wait_for_url(f"{app_url}/notes")
    page.locator(".note").nth(1).wait_for()
    assert _note_bodies(page) == ["second note", "first note"]
    alice.close()


def test_wrong_password_is_refused_and_status_page_shows_health(browser, app_url: str) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page()
    sign_up(page, app_url, "carol", "correct horse battery")
    page.locator("#logout").click()
    page.wait_for_url(f"{app_url}/login")
    page.locator("#username").fill("carol")
    page.locator("#password").fill("wrong password")
    page.locator("#login-form-submit").click()
    error = page.locator("#auth-error")
    error.wait_for()
    assert error.inner_text() == "Wrong username or password."

    page.goto(f"{app_url}/status")
    status = page.locator("#health-status").filter(has_text="healthy (200)")
    status.wait_for()
    assert '"database"' in page.locator("#health-report").inner_text()
    page.close()


def test_the_session_cookie_is_httponly_and_strict(browser, app_url: str) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    redeemed = []
    page.on("response", lambda r: redeemed.append(r) if r.url.endswith("/_auth/session") else None)
    sign_up(page, app_url, "dora", "correct horse battery")
    page.wait_for_load_state("networkidle")
    assert len(redeemed) == 1
    # Playwright's `headers` leaves Set-Cookie out; the raw list has it.
    set_cookies = [
        h["value"] for h in redeemed[0].headers_array() if h["name"].lower() == "set-cookie"
    ]
    assert len(set_cookies) == 1, redeemed[0].headers_array()
    assert "; HttpOnly" in set_cookies[0]
    assert "; SameSite=Strict" in set_cookies[0]
    (cookie,) = [c for c in context.cookies() if c["name"] == "working_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["value"]
    # Scripts cannot read it, and the page's state never holds it.
    assert "working_session" not in page.evaluate("document.cookie")
    assert cookie["value"] not in page.content()

    # A reload, and a new tab, keep the login (the WebSocket handshake carries the cookie).
    page.reload()
    page.locator("#current-user").filter(has_text="dora").wait_for()
    other = context.new_page()
    other.goto(f"{app_url}/notes")
    other.locator("#current-user").filter(has_text="dora").wait_for()
    other.close()

    page.locator("#logout").click()
    page.wait_for_url(f"{app_url}/login")
    page.wait_for_load_state("networkidle")
    assert [c for c in context.cookies() if c["name"] == "working_session"] == []
    page.goto(f"{app_url}/notes")
    page.wait_for_url(f"{app_url}/login")
    context.close()
