"""The Videos page in a real Airflow and a real browser: its rows, players, tabs, spend and access.

The keep example and the fan-out example buy four short, playable videos on the session's deployment;
Debian's Chromium opens the page as the UI frames it, plays a kept copy (range requests, a seek) and a
live URL, opens a task instance's Video tab, and reads the spend. A second api-server on the same
database, with an auth manager that lets ``outsider`` read the fan-out DAG alone, shows what a user
without access to the keep DAG gets. The screenshots in docs/videos-ui.md are taken here.
"""

from __future__ import annotations

import json
import re
import secrets
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.deployment import REPO, Deployment
from tests.test_deployment import ARTIFACTS, chromium
from tests.videos_auth import OUTSIDER

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
KEEP = "grok_video_keep"
KEEP_PROMPT = "Waves rolling onto a black sand beach at sunset"  # the keep example's
FAN_OUT = "grok_video_fan_out"
#: The second api-server: only ``outsider`` (may read FAN_OUT alone) signs in there.
RESTRICTED = "api-server-videos-auth"
OUTSIDER_PASSWORD = secrets.token_urlsafe(16)
DOCS_IMG = REPO / "docs" / "img"
VIEWPORT = {"width": 1400, "height": 900}
#: The emulator's playable clip is 6 s long (airflow_grok_video/emulator/wire.py); seek into it here.
SEEK_TO = 4.0


@dataclass
class Bought:
    """The two runs, what the emulator was asked to make for them, and the restricted api-server."""

    keep_run: str
    fan_out_run: str
    #: The create requests' JSON bodies, in order of arrival.
    creates: list[dict[str, Any]]
    #: The video task ids the emulator handed out.
    video_ids: set[str]
    restricted_port: int


@pytest.fixture(scope="module")
def bought(deployment: Deployment) -> Iterator[Bought]:
    """Run the keep and the fan-out examples on playable, short videos; start the restricted api-server."""
    from dags.grok_video_fan_out import PROMPTS

    deployment.emulator("reset", {})
    deployment.emulator("config", {"playable": True})
    for prompt in (KEEP_PROMPT, *PROMPTS):
        deployment.emulator("rules", {"prompt_contains": prompt, "generation_seconds": 2})
    try:
        keep_run = deployment.trigger(KEEP)
        fan_out_run = deployment.trigger(FAN_OUT)
        # Started while the runs run. Its users sign in with the passwords of this file.
        passwords = deployment.home / "videos-auth-passwords.json"
        passwords.write_text(json.dumps({OUTSIDER: OUTSIDER_PASSWORD}))
        port = deployment.spawn_api_server(
            RESTRICTED,
            {
                "AIRFLOW__CORE__AUTH_MANAGER": "tests.videos_auth.OneDagAuthManager",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{OUTSIDER}:viewer",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "GROK_VIDEO_OUTSIDER_DAG": FAN_OUT,
            },
        )
        assert deployment.finish(KEEP, keep_run) == "success", deployment.logs()
        assert deployment.finish(FAN_OUT, fan_out_run) == "success", deployment.logs()
        creates = [r["json"] for r in deployment.emulator("requests") if r["method"] == "POST"]
        video_ids = set(deployment.emulator("stats")["tasks"])
        yield Bought(keep_run, fan_out_run, creates, video_ids, port)
    finally:
        if RESTRICTED in deployment.processes:
            deployment.kill(RESTRICTED)
        deployment.emulator("config", {"playable": False})


def purchases(deployment: Deployment, dag_id: str | None = None) -> list[dict[str, Any]]:
    """Every video the DB's ``purchase`` XComs record (a batch's: one per item), with its task instance."""
    rows = deployment.query(
        "SELECT dag_id, run_id, task_id, map_index, value FROM xcom WHERE key='purchase'"
        " AND (? IS NULL OR dag_id=?)",
        dag_id,
        dag_id,
    )
    found = []
    for dag, run_id, task_id, map_index, value in rows:
        decoded = json.loads(value)
        for record in decoded if isinstance(decoded, list) else [decoded]:
            if isinstance(record, dict) and record.get("video_task_id"):
                ti = {"dag_id": dag, "run_id": run_id, "task_id": task_id, "map_index": map_index}
                found.append({**record, **ti})
    return found


def videos(records: list[dict[str, Any]]) -> list[str]:
    """The video task ids of purchase records, sorted."""
    return sorted(record["video_task_id"] for record in records)


def video_of(deployment: Deployment, dag_id: str, run_id: str, map_index: int = -1) -> str:
    """The video task id a run's create bought (the one of that map index)."""
    [video] = [
        record["video_task_id"]
        for record in purchases(deployment, dag_id)
        if record["run_id"] == run_id and record["map_index"] == map_index
    ]
    return str(video)


# -- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@dataclass
class Tab:
    """A browser tab and every response it received, its iframes' too."""

    page: Any
    responses: list[Any]


def open_tab(context: Any) -> Tab:
    page = context.new_page()
    opened = Tab(page, [])
    page.on("response", lambda response: opened.responses.append(response))
    return opened


@pytest.fixture(scope="module")
def context(browser: Any) -> Iterator[Any]:
    """The admin's browser profile, shared by the tests: Airflow's UI loads faster from its cache."""
    shared = browser.new_context(viewport=VIEWPORT)
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def tab(context: Any) -> Iterator[Tab]:
    opened = open_tab(context)
    try:
        yield opened
    finally:
        opened.page.close()


@pytest.fixture
def fresh_tab(browser: Any) -> Iterator[Tab]:
    """A tab of a new profile: nothing cached, no cookies."""
    own = browser.new_context(viewport=VIEWPORT)
    try:
        yield open_tab(own)
    finally:
        own.close()


#: Each row of the page's table as the page shows it.
ROWS = """rows => rows.map(tr => {
  const td = [...tr.children];
  return {
    video: tr.dataset.video, created: td[0].textContent, dag_id: td[1].textContent, run_id: td[2].textContent,
    task: td[3].querySelector("a").textContent, href: td[3].querySelector("a").getAttribute("href"),
    prompt: td[4].textContent, seconds: td[6].textContent, state: td[9].firstChild.textContent,
    notes: [...td[9].querySelectorAll(".note")].map(note => note.textContent),
  };
})"""

#: Waits (in the page) until ``ok()``, or fails saying what the video is doing.
_UNTIL = """const until = (ok, what, ms = 20000) => new Promise((resolve, reject) => {
    const start = performance.now();
    const poll = () => ok() ? resolve() : performance.now() - start > ms
      ? reject(new Error(`${what}: readyState ${video.readyState}, networkState ${video.networkState},`
          + ` currentTime ${video.currentTime}, error ${video.error && video.error.code}`))
      : setTimeout(poll, 50);
    poll();
  });"""

#: A frame to show (readyState >= 2), then play (muted: no gesture needed) until the time moves on.
PLAY = f"""async video => {{
  {_UNTIL}
  await until(() => video.readyState >= 2, "no frame to show");
  const ready = video.readyState;
  video.muted = true;
  await video.play();
  const start = video.currentTime;
  await until(() => video.currentTime >= start + 0.5, "not playing");
  return {{ready, start, now: video.currentTime, duration: video.duration}};
}}"""

#: Seek while playing, then let it play on from there.
SEEK = f"""async (video, to) => {{
  {_UNTIL}
  const seeked = new Promise((resolve, reject) => {{
    const late = setTimeout(() => reject(new Error(`no seeked event at ${{video.currentTime}}`)), 10000);
    video.addEventListener("seeked", () => {{ clearTimeout(late); resolve(); }}, {{once: true}});
  }});
  video.currentTime = to;
  await seeked;
  const landed = video.currentTime;
  await until(() => video.currentTime >= landed + 0.4, "not playing after the seek");
  const now = video.currentTime;
  video.pause();
  return {{landed, now}};
}}"""


def videos_frame(page: Any, name: str = "Videos") -> Any:
    """The plugin's iframe (Airflow titles it with the view's name), once it has loaded its videos."""
    frame = page.frame_locator(f"iframe[title='{name}']")
    frame.locator("#videos:not([hidden]), #empty:not([hidden])").first.wait_for()
    empty = frame.locator("#empty")
    if empty.get_attribute("hidden") is None:  # no videos, or "Could not load the videos (HTTP ...)"
        shell = frame.locator("main").evaluate("main => JSON.stringify(main.dataset)")
        raise AssertionError(f"{empty.inner_text()} (the page's data attributes: {shell})")
    return frame


def every_row(frame: Any) -> list[dict[str, Any]]:
    """The rows of every page of the Videos page's table, going through them with "Older"."""
    rows: list[dict[str, Any]] = []
    while True:
        frame.locator("#range", has_text=re.compile(rf"^{len(rows) + 1}\u2013")).wait_for()
        rows += frame.locator("#videos tbody tr.video").evaluate_all(ROWS)
        older = frame.locator("#next")
        if older.is_disabled():
            return rows
        older.click()


def spend(frame: Any) -> tuple[list[str], dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """The spend as shown: the totals' figures, and (videos, seconds) per DAG and per day."""
    frame.locator("#spend:not([hidden])").wait_for()
    totals = frame.locator("#totals b").all_inner_texts()

    def table(table_id: str) -> dict[str, tuple[int, int]]:
        cells = frame.locator(f"#{table_id} tbody tr").evaluate_all(
            "rows => rows.map(tr => [...tr.children].map(td => td.textContent))"
        )
        return {name: (int(videos), int(seconds)) for name, videos, seconds, _ in cells}

    return totals, table("by-dag"), table("by-day")


def open_videos_page(tab: Tab, deployment: Deployment, click: bool = False) -> Any:
    """The Videos page's iframe, at the UI's route for it or (``click``) from "Videos" in the navigation."""
    page = tab.page
    base = f"http://127.0.0.1:{deployment.api_port}"
    if click:
        page.goto(f"{base}/")
        page.get_by_role("link", name="Videos", exact=True).click()
        page.wait_for_url(re.compile(r"/plugin/grok-videos(/|$)"))
    else:
        page.goto(f"{base}/plugin/grok-videos")
    return videos_frame(page)


def select(frame: Any, video_id: str) -> Any:
    """Click a video's row; the player's ``<video>`` element."""
    frame.locator(f"tr.video[data-video='{video_id}'] td.prompt").click()
    return frame.locator("#player video[src]")


# -- the tests ----------------------------------------------------------------------------------


def test_every_video_is_a_row_with_its_prompt_seconds_and_state(
    deployment: Deployment, bought: Bought, tab: Tab
) -> None:
    from dags.grok_video_fan_out import PROMPTS

    frame = open_videos_page(tab, deployment, click=True)
    rows = every_row(frame)
    recorded = purchases(deployment)
    # Every video the DB records is one row (whatever other tests of the session bought), as bought.
    assert sorted(row["video"] for row in rows) == videos(recorded)
    record_of = {record["video_task_id"]: record for record in recorded}
    for row in rows:
        record = record_of[row["video"]]
        assert (row["dag_id"], row["run_id"], row["prompt"], row["seconds"]) == (
            record["dag_id"],
            record["run_id"],
            record["prompt"],
            str(record["seconds"]),
        )
    runs = {(KEEP, bought.keep_run), (FAN_OUT, bought.fan_out_run)}
    ours = [r for r in rows if (r["dag_id"], r["run_id"]) in runs]
    # These runs' rows are the emulator's creates: the same videos, prompts and seconds.
    assert {r["video"] for r in ours} == bought.video_ids
    assert Counter((r["prompt"], int(r["seconds"])) for r in ours) == Counter(
        (body["prompt"], body["duration"]) for body in bought.creates
    )
    [kept] = [r for r in ours if r["dag_id"] == KEEP]
    stored = deployment.home / "videos" / f"{bought.keep_run}.mp4"
    assert (kept["prompt"], kept["task"], kept["state"]) == (KEEP_PROMPT, "make_video", "kept")
    assert kept["notes"] == [f"file://{stored}"] and stored.stat().st_size > 0
    fan_out = sorted((r for r in ours if r["dag_id"] == FAN_OUT), key=lambda r: r["task"])
    assert [(r["task"], r["prompt"], r["state"]) for r in fan_out] == [
        (f"create_video [{index}]", prompt, "ready") for index, prompt in enumerate(PROMPTS)
    ]
    created = [r["created"] for r in rows]
    assert created == sorted(created, reverse=True)  # newest first


def test_a_kept_video_plays_and_seeks_with_range_requests_and_a_live_one_plays(
    deployment: Deployment, bought: Bought, fresh_tab: Tab
) -> None:
    tab = fresh_tab  # nothing of the video in the browser's cache: its bytes come from the server
    frame = open_videos_page(tab, deployment)
    kept_id = video_of(deployment, KEEP, bought.keep_run)
    video = select(frame, kept_id)
    media = f"/grok_video/media/{KEEP}/{bought.keep_run}/make_video/-1/{kept_id}"
    assert (video.get_attribute("data-source"), video.get_attribute("src")) == ("kept", media)
    played = video.evaluate(PLAY)
    assert played["ready"] >= 2 and played["now"] > played["start"], played
    seek = video.evaluate(SEEK, SEEK_TO)
    assert abs(seek["landed"] - SEEK_TO) < 0.3 and seek["now"] > seek["landed"], seek
    streamed = [
        (r.status, r.request.all_headers().get("range"), r.all_headers().get("content-range"))
        for r in tab.responses
        if r.url.endswith(media)
    ]
    size = (deployment.home / "videos" / f"{bought.keep_run}.mp4").stat().st_size
    assert streamed and all(status == 206 for status, _, _ in streamed), streamed
    assert all(ask and ask.startswith("bytes=") for _, ask, _ in streamed), streamed
    assert all(answer and answer.endswith(f"/{size}") for _, _, answer in streamed), streamed
    assert frame.locator("tr.selected").get_attribute("data-video") == kept_id
    tab.page.screenshot(path=str(DOCS_IMG / "videos-page.png"))

    # A video that was not kept plays from the emulator's URL (the API's own, signed in real life).
    live_id = video_of(deployment, FAN_OUT, bought.fan_out_run, 0)
    video = select(frame, live_id)
    live_url = f"{deployment.emulator_url}/videos/{live_id}.mp4"
    assert (video.get_attribute("data-source"), video.get_attribute("src")) == ("live", live_url)
    played = video.evaluate(PLAY)
    assert played["ready"] >= 2 and played["now"] > played["start"], played
    downloads = [r for r in deployment.emulator("requests") if r["path"] == f"/videos/{live_id}.mp4"]
    assert any("Chrome" in r["user_agent"] and r["status"] in (200, 206) for r in downloads), downloads


def test_the_task_instance_video_tab_plays_that_tasks_video(
    deployment: Deployment, bought: Bought, tab: Tab
) -> None:
    page = tab.page
    task = f"http://127.0.0.1:{deployment.api_port}/dags/{KEEP}/runs/{bought.keep_run}/tasks/keep_video"
    page.goto(task)
    page.get_by_role("link", name="Video", exact=True).click()
    page.wait_for_url(f"{task}/plugin/grok-video")
    frame = videos_frame(page, "Video")
    expect(frame.locator("#title")).to_have_text("Video of keep_video")
    kept_id = video_of(deployment, KEEP, bought.keep_run)
    [row] = frame.locator("#videos tbody tr.video").evaluate_all(ROWS)
    assert (row["video"], row["prompt"], row["state"]) == (kept_id, KEEP_PROMPT, "kept")
    video = frame.locator("#player video[src]")  # the tab plays the task's video at once
    assert video.get_attribute("src") == f"/grok_video/media/{KEEP}/{bought.keep_run}/make_video/-1/{kept_id}"
    played = video.evaluate(PLAY)
    assert played["ready"] >= 2 and played["now"] > played["start"], played
    video.evaluate("video => video.pause()")
    page.screenshot(path=str(DOCS_IMG / "videos-tab.png"))
    # The Videos page's filters and pages are not the tab's: one task's video, nothing to choose.
    assert frame.locator("#filters").is_hidden() and frame.locator("#pages").is_hidden()


def test_the_dag_run_videos_tab_lists_the_runs_videos(
    deployment: Deployment, bought: Bought, tab: Tab
) -> None:
    page = tab.page
    run = f"http://127.0.0.1:{deployment.api_port}/dags/{FAN_OUT}/runs/{bought.fan_out_run}"
    page.goto(run)
    tab_link = page.locator("a[href$='/plugin/grok-videos-run']")  # not the navigation's "Videos"
    expect(tab_link).to_have_text("Videos")  # the UI fills the tab in after the page loads
    tab_link.click()
    page.wait_for_url(f"{run}/plugin/grok-videos-run")
    frame = videos_frame(page, "Videos")
    expect(frame.locator("#title")).to_have_text(f"Videos of run {bought.fan_out_run}")
    rows = frame.locator("#videos tbody tr.video").evaluate_all(ROWS)
    assert sorted((r["task"], r["video"]) for r in rows) == [
        (f"create_video [{index}]", video_of(deployment, FAN_OUT, bought.fan_out_run, index))
        for index in range(3)
    ]
    assert frame.locator("#player video[src]").get_attribute("data-source") == "live"  # the newest, at once
    expect(frame.locator("#spend #totals b").first).to_have_text("3")
    assert frame.locator("#filters").is_hidden() and frame.locator("#pages").is_hidden()


def test_a_rows_task_opens_that_task_instance_in_the_ui(
    deployment: Deployment, bought: Bought, tab: Tab
) -> None:
    frame = open_videos_page(tab, deployment)
    kept_id = video_of(deployment, KEEP, bought.keep_run)
    link = frame.locator(f"tr.video[data-video='{kept_id}'] a")
    assert link.inner_text() == "make_video"
    link.click()
    target = f"http://127.0.0.1:{deployment.api_port}/dags/{KEEP}/runs/{bought.keep_run}/tasks/make_video"
    tab.page.wait_for_url(re.compile(re.escape(target) + r"(/.*)?$"), timeout=10_000)


def test_the_spend_adds_up_the_purchase_records(deployment: Deployment, bought: Bought, tab: Tab) -> None:
    frame = open_videos_page(tab, deployment)
    recorded = purchases(deployment)
    totals, by_dag, by_day = spend(frame)
    seconds = sum(int(r["seconds"]) for r in recorded)
    assert totals[:2] == [str(len(recorded)), str(seconds)]
    per_dag: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in recorded:
        per_dag[record["dag_id"]][0] += 1
        per_dag[record["dag_id"]][1] += int(record["seconds"])
    assert by_dag == {dag: (count, secs) for dag, (count, secs) in per_dag.items()}
    assert by_dag[KEEP][0] >= 1 and by_dag[FAN_OUT][0] >= 3
    assert tuple(map(sum, zip(*by_day.values(), strict=True))) == (len(recorded), seconds)


# -- access ----------------------------------------------------------------------------------------


def plugin_routes(deployment: Deployment, bought: Bought) -> list[str]:
    """Every route of the plugin, for the keep run (the DAG the outsider may not read)."""
    kept_id = video_of(deployment, KEEP, bought.keep_run)
    run = f"{KEEP}/{bought.keep_run}"
    return [
        "/grok_video/videos",
        "/grok_video/api/videos",
        f"/grok_video/api/videos?dag_id={KEEP}",
        f"/grok_video/task/{run}/keep_video/-1",
        f"/grok_video/run/{run}",
        f"/grok_video/media/{run}/make_video/-1/{kept_id}",
    ]


def test_anonymous_requests_get_nothing(deployment: Deployment, bought: Bought) -> None:
    secrets_of_keep = [KEEP_PROMPT, bought.keep_run, *bought.video_ids, deployment.emulator_url]
    for path in plugin_routes(deployment, bought):
        request = urllib.request.Request(f"http://127.0.0.1:{bought.restricted_port}{path}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        body = refused.value.read().decode(errors="replace")
        assert refused.value.code in (401, 403), (path, refused.value.code, body)
        assert not [leak for leak in secrets_of_keep if leak in body], (path, body)


def test_a_user_sees_only_the_dags_they_may_read(
    deployment: Deployment, bought: Bought, fresh_tab: Tab
) -> None:
    page = fresh_tab.page  # a profile of its own: cookies are per host, not per port
    base = f"http://127.0.0.1:{bought.restricted_port}"
    # The UI sends a visitor without a session to Airflow's sign-in page, which sets the _token cookie.
    page.goto(f"{base}/plugin/grok-videos")
    page.wait_for_url(re.compile(r"/auth/login"))
    page.get_by_label("Username").fill(OUTSIDER)
    page.get_by_label("Password").fill(OUTSIDER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/plugin/grok-videos(/|$)"))
    assert "_token" in {cookie["name"] for cookie in page.context.cookies()}
    frame = videos_frame(page)
    rows = every_row(frame)
    theirs = purchases(deployment, FAN_OUT)
    assert sorted(r["video"] for r in rows) == videos(theirs) and {r["dag_id"] for r in rows} == {FAN_OUT}
    totals, by_dag, _ = spend(frame)
    seconds = sum(int(r["seconds"]) for r in theirs)
    assert totals[:2] == [str(len(theirs)), str(seconds)] and by_dag == {FAN_OUT: (len(theirs), seconds)}
    page.screenshot(path=str(ARTIFACTS / "videos-page-outsider.png"))
    # What the page's own script could ask for, with the user's cookie: nothing of the keep DAG.
    routes = plugin_routes(deployment, bought)
    answers = frame.locator("main").evaluate(
        """async (main, paths) => Promise.all(paths.map(async path => {
          const response = await fetch(path, {credentials: "same-origin"});
          return [path, response.status, await response.text()];
        }))""",
        routes,
    )
    by_path = {path: (status, text) for path, status, text in answers}
    assert by_path[f"/grok_video/api/videos?dag_id={KEEP}"][0] == 200
    assert json.loads(by_path[f"/grok_video/api/videos?dag_id={KEEP}"][1])["total"] == 0
    for path in routes[3:]:  # the keep run's task and run tabs, and its kept copy
        assert by_path[path][0] == 403, (path, by_path[path])
    said = "".join(text for _, text in by_path.values())
    assert KEEP_PROMPT not in said and video_of(deployment, KEEP, bought.keep_run) not in said
