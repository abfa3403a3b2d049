"""The web console in a real browser: headless Chromium (the OS package, which
deploy/install.sh installs) loads the pages of a scenario's submission, runs no
script but the page's own, and leaves a screenshot as a test artifact (under the
test's tmp dir, and a copy in .local/artifacts/, which CI keeps)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.console.rig import Rig
from tests.console.scenario import Scenario
from tests.console.test_waterfall import span_line

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".local" / "artifacts"
TRACE = "6df92f3577b34da6a3ce929d0e0e4738"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
SCRIPT = "<script>document.title='pwned'</script>"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("no chromium on PATH: bash deploy/install.sh installs the OS package")
    return found


async def browse(url: str, profile: Path, *options: str) -> str:
    """Chromium's stdout for ``url`` (``--dump-dom``: the DOM after the page's scripts).

    A subprocess of the event loop, never a blocking call: the console under test
    serves from this same loop.
    """
    process = await asyncio.create_subprocess_exec(
        chromium(),
        "--headless",
        "--no-sandbox",  # tests run as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
        *options,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"chromium did not finish loading {url} in 90 s") from None
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


async def scenario(console: Rig) -> Scenario:
    s = Scenario(family=f"frontier {SCRIPT}")
    await console.send(s.accepted(), traceparent=TRACEPARENT)
    for data in s.pipeline()[1:]:
        await console.send(data)
    await console.send(s.policy(1, published=s.at(seconds=25), acknowledge_by=s.at(days=1)))
    await console.until_row(
        "the review so far",
        """SELECT (SELECT count(*) FROM orders WHERE submission_id = $1) = 2
              AND (SELECT count(*) FROM policies WHERE model_id = $2) = 1""",
        s.submission_id,
        s.model_id,
    )
    console.write_spans(
        [
            span_line(1, None, "lab.submissions process", "intake", 0, 30, trace=TRACE),
            span_line(2, 1, "intake.events process", "evaluation", 40, 120, trace=TRACE),
            span_line(3, 2, "evaluation.events process", "risk", 130, 180, trace=TRACE),
            span_line(4, 3, "risk.events process", "access", 190, 230, trace=TRACE),
        ]
    )
    return s


def with_token(console: Rig, path: str) -> str:
    """The page's URL with the token as basic-auth password: what a browser can send."""
    return f"http://ops:{console.token}@127.0.0.1:{console.service.http_port}{path}"


async def test_chromium_loads_the_submission_page_and_runs_none_of_its_markup(
    console: Rig, tmp_path: Path
) -> None:
    s = await scenario(console)
    dom = await browse(
        with_token(console, f"/submissions/{s.submission_id}"), tmp_path / "profile", "--dump-dom"
    )
    assert s.model_id in dom and "evaluated" in dom and "2/2" in dom
    assert "<title>pwned</title>" not in dom
    assert f"<title>{s.model_id} — frontier-review console</title>" in dom
    # the page's own script ran (the CSP nonce admits it): it keeps the countdowns live
    assert 'data-live=""' in dom and " left</span>" in dom


async def test_chromium_loads_the_list_with_the_submission_linked(
    console: Rig, tmp_path: Path
) -> None:
    s = await scenario(console)
    dom = await browse(with_token(console, "/"), tmp_path / "profile", "--dump-dom")
    assert "<title>frontier-review console</title>" in dom
    assert f'href="/submissions/{s.submission_id}"' in dom and s.model_id in dom


async def test_chromium_loads_the_submissions_trace_waterfall(console: Rig, tmp_path: Path) -> None:
    s = await scenario(console)
    dom = await browse(
        with_token(console, f"/submissions/{s.submission_id}/trace"),
        tmp_path / "profile",
        "--dump-dom",
    )
    assert f"<title>Trace {TRACE} — frontier-review console</title>" in dom
    assert "4 spans over 230.0 ms" in dom
    assert dom.count('<td class="bar">') == 4 and "risk.events process" in dom


async def test_chromium_without_the_token_gets_no_page(console: Rig, tmp_path: Path) -> None:
    s = await scenario(console)
    url = f"http://127.0.0.1:{console.service.http_port}/submissions/{s.submission_id}"
    dom = await browse(url, tmp_path / "profile", "--dump-dom")  # 401: the login prompt
    assert s.model_id not in dom and "frontier-review console" not in dom


async def test_screenshots_of_the_submission_and_its_trace_are_kept(
    console: Rig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = await scenario(console)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, path in [
        ("console-submissions", "/"),
        ("console-submission", f"/submissions/{s.submission_id}"),
        ("console-trace", f"/submissions/{s.submission_id}/trace"),
    ]:
        shot = tmp_path / f"{name}.png"
        await browse(
            with_token(console, path),
            tmp_path / f"profile-{name}",
            f"--screenshot={shot}",
            "--window-size=1400,1800",
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        kept = ARTIFACTS / shot.name
        shutil.copyfile(shot, kept)
        with capsys.disabled():  # the path shows in every run, not only a failing one
            print(f"\nscreenshot: {shot} (kept as {kept})")


def test_without_chromium_the_browser_tests_fail_and_name_the_installer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no chromium on it
    with pytest.raises(pytest.fail.Exception, match=r"bash deploy/install\.sh"):
        chromium()
