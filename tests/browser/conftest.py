"""Real-browser fixtures: Debian's Chromium driven by Playwright, with a fake
microphone that plays a WAV file, against a real server process.

Chromium is a system package (``apt-get install -y chromium``; ``.ci/run``
installs it). Without it the tests skip loudly on a developer machine and
fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client

from tests.servers import ServerProcess, server_factory  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
FAKE_MIC_WAV = REPO / "tests" / "fixtures" / "audio" / "console_consultation_en.wav"
ARTIFACTS = REPO / "test-artifacts" / "browser"
AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
# What fails a page: WCAG problems that block or seriously hinder someone.
AXE_FAILING_IMPACTS = ("serious", "critical")

# docs/architecture.md, "Measured facts": real-browser tests with a fake microphone.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # %noloop: play once, then repeat the last 10 ms (the file ends in silence).
    f"--use-file-for-fake-audio-capture={FAKE_MIC_WAV}%noloop",
]


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    reason = f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (browser tests NOT run)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason, pytrace=False)
    print(f"\n*** SKIPPING BROWSER TESTS: {reason} ***")
    pytest.skip(reason)


@contextlib.contextmanager
def launched_chromium() -> Iterator:
    """Chromium under Playwright. Its sync API keeps an event loop running
    in this thread while open, which Django's async-safety check mistakes
    for async code; the tests' own ORM calls are plain sync code, so the
    check is lifted only while the browser is open."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield instance
            finally:
                instance.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser(transactional_db) -> Iterator:
    """One Chromium per test, closed before the database is flushed."""
    with launched_chromium() as instance:
        yield instance


@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> Path:
    """The console's static files where WhiteNoise serves them without
    DEBUG (a plain copy: the storage only compresses, it keeps names)."""
    root = tmp_path_factory.mktemp("static")
    shutil.copytree(REPO / "static", root, dirs_exist_ok=True)
    return root


@pytest.fixture(scope="session")
def collected_static_root(tmp_path_factory) -> Path:
    """Every app's static files (the admin's too), as ``collectstatic`` lays
    them out for production."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("collected-static")
    env = {**os.environ, "DEBUG": "1", "STATIC_ROOT": str(root)}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True
    )
    return root


@pytest.fixture
def console_server(transactional_db, server_factory, static_root):  # noqa: F811
    def start(*, port: int | None = None, **env: str) -> ServerProcess:
        env = {"TRANSCRIPTION_ENGINE": "fake", "STATIC_ROOT": str(static_root), **env}
        return server_factory(env=env, port=port)

    return start


def set_browser_password(user, password: str) -> None:
    """The server runs the production settings, whose hashers don't include
    the test suite's fast MD5 one: store a PBKDF2 hash it can check (few
    iterations: the server upgrades it on login)."""
    user.password = PBKDF2PasswordHasher().encode(password, "browsertestsalt", iterations=1000)
    user.save(update_fields=["password"])


def session_cookie_for(user, server: ServerProcess) -> dict:
    """A signed-in Django session (stored in the shared database) as a
    browser cookie, like ``Client.force_login``."""
    client = Client()
    client.force_login(user)
    return {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server.url}


@pytest.fixture
def page_factory(browser, request) -> Iterator:
    """New browser pages; on teardown each is screenshotted (named after the
    test) into test-artifacts/browser/ and closed. Console errors of the page
    are kept on ``page.console_errors`` for assertion messages."""
    contexts = []

    def make(
        *,
        locale: str = "en-US",
        cookies: list[dict] | None = None,
        init_script: str | None = None,
        viewport: dict | None = None,
    ):
        phone = viewport is not None and viewport["width"] < 600
        context = browser.new_context(
            locale=locale,
            viewport=viewport or {"width": 1280, "height": 900},
            is_mobile=phone,
            has_touch=phone,
            device_scale_factor=2 if phone else 1,
        )
        if cookies:
            context.add_cookies(cookies)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        page.console_errors = []
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
        contexts.append(context)
        return page

    yield make
    for index, context in enumerate(contexts):
        # The last state of every page, for looking into failures.
        for number, page in enumerate(context.pages):
            with contextlib.suppress(Exception):
                screenshot(page, f"last-{request.node.name}-{index}-{number}")
            if getattr(page, "console_errors", None):
                print(f"console errors of page {index}-{number}: {page.console_errors}")
        context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now
    (WCAG 2.x A and AA rules plus best practices), each with the selectors
    of its offending nodes."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_JS))
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in results["violations"]
        if v["impact"] in AXE_FAILING_IMPACTS
    ]


def assert_accessible(page, where: str) -> None:
    found = axe_violations(page)
    assert found == [], f"axe-core on {where} ({page.url}): {found}"
