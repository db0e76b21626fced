"""The web views in a real headless Chromium against a real `scan-root console serve`, on SQLite
and a throwaway PostgreSQL: the issue's acceptance flow (sign in, Deployed filtered to Fargate,
an image's compliance and tasks, a Defend rule the policy API returns), hostile names shown
as text, the filter bar by keyboard. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import browser as browser_support
import ecs_scenario
import httpx
import pytest
import yaml
from browser import Browser, Consoles
from console_reports import container_document, ecs_task, scan_report, task_document
from ecs_scenario import Scenario
from selenium.common.exceptions import NoSuchElementException, WebDriverException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

ENGINES = ("sqlite", "postgresql")
USER = "alice"
PASSWORD = "correct horse battery staple"
DEPLOYED = "/monitor/compliance/images/deployed"
DEFEND = "/defend/compliance/containers"
MINER_TITLE = "Image contains binaries used for crypto mining"
WAIT = 15.0  # seconds for a page to load after a click
# What a hostile root puts in an image name and in file names; either, if run, sets the flag.
SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
HOSTILE_IMAGE = f"{SCRIPT}{IMG}:1"
HOSTILE_PATHS = (f"/tmp/{SCRIPT}", f"/tmp/{IMG}")
MINER_BYTES = b"\x7fELF xmrig --donate-level 1 stratum+tcp://pool.example\n"


@dataclass(frozen=True)
class World:
    """A console with the scenario's reports and a hostile one ingested, a user, tokens."""

    browser: Browser
    read_token: str
    admin_token: str
    scenario: Scenario


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    if not ecs_scenario.DEFINITION.is_file():
        pytest.skip(f"../shared is absent ({ecs_scenario.DEFINITION} not found)")
    return ecs_scenario.run_scenario(tmp_path_factory.mktemp("browser-ecs"))


@pytest.fixture(scope="session")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The scanner's report of a root whose miners are named with markup, in an EC2 task whose
    image is named with markup: `/tmp/<script>...</script>` is a directory `<script>...<`
    holding `script>`."""
    root = tmp_path_factory.mktemp("hostile") / "root"
    directory = root / "tmp" / SCRIPT.removesuffix("/script>")
    directory.mkdir(parents=True)
    for path in HOSTILE_PATHS:
        miner = root / path.lstrip("/")
        miner.write_bytes(MINER_BYTES)
        miner.chmod(0o755)
    task_id = uuid.uuid4().hex
    task = task_document(task_id, family="hostile-task", launch_type="EC2", containers=[])
    container = container_document(task_id, "app", HOSTILE_IMAGE, "sha256:" + "ab" * 32)
    task["Containers"] = [container]
    with ecs_task(task, container):
        report = scan_report(root)
    assert sorted(finding["path"] for finding in report["findings"]) == sorted(HOSTILE_PATHS)
    return report


@pytest.fixture(scope="session")
def seeded() -> dict[str, tuple[str, str, str]]:
    """Per engine, once its console is seeded: (base URL, read token, admin token)."""
    return {}


def _seed(
    engine: str,
    url: Callable[[Path], str],
    consoles: Consoles,
    scenario: Scenario,
    hostile: dict[str, Any],
    seeded: dict[str, tuple[str, str, str]],
) -> tuple[str, str, str]:
    """The console of `engine`, with a user, and the scenario's reports and the hostile one
    ingested through the API with an ingest token; done once per session."""
    if engine not in seeded:
        served = consoles.get(engine, url)
        served.add_user(USER, PASSWORD)
        ingest = served.token("defender")
        for report in [*scenario.reports, hostile]:
            answer = served.post_report(json.dumps(report).encode(), ingest)
            assert answer.status_code == 201, answer.text
        seeded[engine] = (
            served.base_url,
            served.token("reader", "read"),
            served.token("admin", "admin"),
        )
    return seeded[engine]


@pytest.fixture(params=ENGINES)
def world(
    request: pytest.FixtureRequest,
    browser_consoles: Consoles,
    chromium: Chrome,
    scenario: Scenario,
    hostile_report: dict[str, Any],
    seeded: dict[str, tuple[str, str, str]],
) -> Iterator[World]:
    """The console on each engine (started and seeded once per session), and the session's
    browser signed out and pointed at it."""
    engine = str(request.param)
    if engine == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")

        def url(directory: Path) -> str:
            return str(cluster.url(cluster.new_database()))
    else:

        def url(directory: Path) -> str:
            return f"sqlite:///{directory / 'console.db'}"

    base_url, read_token, admin_token = _seed(
        engine, url, browser_consoles, scenario, hostile_report, seeded
    )
    browser = Browser(chromium, base_url, engine)
    browser.reset()
    yield World(browser, read_token, admin_token, scenario)
    browser.reset()


# --- helpers ------------------------------------------------------------------------------


def one(driver: WebDriver | WebElement, css: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, css)


def every(driver: WebDriver | WebElement, css: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, css)


def wait_for(browser: Browser, css: str) -> WebElement:
    found: WebElement = WebDriverWait(browser.driver, WAIT).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )
    return found


def submit_and_wait(browser: Browser, button: WebElement) -> None:
    """Click a submit button (or a link) and wait until the page it leads to has replaced
    this one."""
    html = one(browser.driver, "html")
    button.click()
    replaced(browser, html)


def replaced(browser: Browser, html: WebElement) -> None:
    """Wait until `html`, the old page's root, is gone. While the new page comes in, Chromium
    may answer "node does not belong to the document" instead of "stale": asked again."""
    wait = WebDriverWait(browser.driver, WAIT, ignored_exceptions=(WebDriverException,))
    wait.until(expected_conditions.staleness_of(html))


def sign_in(world: World, page: str) -> None:
    """Through the login form, as a person does, sent on to `page` once signed in."""
    browser = world.browser
    browser.open(f"/login?next={quote(page, safe='')}")
    form = wait_for(browser, "form#login")
    one(form, "input[name=username]").send_keys(USER)
    one(form, "input[name=password]").send_keys(PASSWORD)
    submit_and_wait(browser, one(form, "button[type=submit]"))
    assert browser.path() == page
    wait_for(browser, "span#signed-in-as")


def page_errors(browser: Browser, *expected: str) -> list[str]:
    """The console's errors since the last look (CSP refusals, script errors, failed loads),
    but for the favicon the console does not serve and those naming an `expected` text."""
    return [
        message
        for message in browser.errors()
        if "/favicon.ico " not in message and not any(text in message for text in expected)
    ]


def pwned(browser: Browser) -> Any:
    return browser.driver.execute_script("return window.__pwned")


def image_rows(browser: Browser) -> dict[str, WebElement]:
    """Deployed's rows by the image name shown."""
    return {one(row, "td.name a").text: row for row in every(browser.driver, "tr.image-row")}


def p_name(scenario: Scenario) -> str:
    return scenario.images["P"][0]


# --- the acceptance flow ------------------------------------------------------------------


def test_sign_in_through_the_form(world: World) -> None:
    browser = world.browser
    browser.open("/")
    form = wait_for(browser, "form#login")
    assert browser.path().startswith("/login")
    browser.screenshot("login")
    one(form, "input[name=username]").send_keys(USER)
    one(form, "input[name=password]").send_keys("not the password")
    submit_and_wait(browser, one(form, "button[type=submit]"))
    assert one(browser.driver, "p#login-error").is_displayed()
    assert every(browser.driver, "span#signed-in-as") == []

    form = one(browser.driver, "form#login")
    one(form, "input[name=username]").clear()
    one(form, "input[name=username]").send_keys(USER)
    one(form, "input[name=password]").send_keys(PASSWORD)
    submit_and_wait(browser, one(form, "button[type=submit]"))
    assert USER in wait_for(browser, "span#signed-in-as").text
    assert browser.path().startswith(DEPLOYED)
    assert (
        page_errors(
            browser, "/login - Failed to load resource: the server responded with a status of 401"
        )
        == []
    )

    submit_and_wait(browser, one(browser.driver, "form#logout button"))
    browser.open(DEPLOYED)
    wait_for(browser, "form#login")  # signed out: the page asks again


def test_deployed_filtered_to_fargate_then_the_image(world: World) -> None:
    browser, scenario = world.browser, world.scenario
    sign_in(world, DEPLOYED)
    wait_for(browser, "table#images")
    assert {p_name(scenario), scenario.images["Q"][0]} <= set(image_rows(browser))
    browser.screenshot("deployed")

    filters = one(browser.driver, "form#filters")
    Select(one(filters, "select[name=fargate]")).select_by_value("true")
    one(filters, "input[name=search]").send_keys("fargate-task OR fargate-task*")
    submit_and_wait(browser, one(filters, "button#apply-filters"))
    assert "fargate=true" in browser.path()
    rows = image_rows(browser)
    assert list(rows) == [p_name(scenario)]
    row = rows[p_name(scenario)]
    assert one(row, "td.hosts").text.strip() == "3"
    assert one(row, "span.badge-fargate").is_displayed()
    browser.screenshot("deployed-filtered")

    submit_and_wait(browser, one(row, "td.name a"))
    assert one(browser.driver, "h1#image-name").text.strip() == p_name(scenario)
    check = one(browser.driver, 'section#compliance section.check[data-check="426"]')
    assert MINER_TITLE in one(check, "h3").text
    paths = [one(finding, "td.path").text for finding in every(check, "tr.finding")]
    assert scenario.miner in paths
    browser.screenshot("image-compliance")

    submit_and_wait(browser, one(browser.driver, "a#tab-fargate-tasks"))
    tasks = every(browser.driver, "section#fargate-tasks tr.task")
    task_ids = {one(task, "td.task-id").text.strip() for task in tasks}
    assert task_ids == {scenario.tasks["T1"].task_id, scenario.tasks["T2"].task_id}
    browser.screenshot("image-fargate-tasks")

    submit_and_wait(browser, one(browser.driver, "a#tab-hosts"))
    assert len(every(browser.driver, "section#hosts tr.host")) == 3
    browser.screenshot("image-hosts")

    browser.open("/monitor/compliance/hosts")
    wait_for(browser, "main#content")
    assert scenario.instance in one(browser.driver, "main#content").text
    browser.screenshot("hosts")
    assert page_errors(browser) == []


def test_defend_rule_on_a_new_collection_reaches_the_policy_api(world: World) -> None:
    browser = world.browser
    sign_in(world, DEFEND)
    form = wait_for(browser, "form#new-collection")
    one(form, "input[name=name]").send_keys("fargate-tasks")
    one(form, "input[name=hosts]").send_keys("fargate-task*")
    submit_and_wait(browser, one(form, "button[type=submit]"))
    assert every(browser.driver, "#error") == []
    collection = one(browser.driver, 'tr.collection[data-collection="fargate-tasks"]')
    assert one(collection, "td.hosts").text == "fargate-task*"

    add_rule(browser, "ignore-keys", "fargate-tasks", "ignore", "425")
    fetched = httpx.get(
        browser.base_url + "/api/v1/policy",
        headers={"Authorization": f"Bearer {world.read_token}"},
        timeout=30,
    )
    assert fetched.status_code == 200, fetched.text
    document = yaml.safe_load(fetched.text)
    assert {"name": "fargate-tasks", "hosts": ["fargate-task*"]} in document["collections"]
    assert {
        "name": "ignore-keys",
        "collections": ["fargate-tasks"],
        "effects": {"425": "ignore"},
    } in document["rules"]
    ignore = one(browser.driver, 'tr.rule[data-rule="ignore-keys"]')
    assert every(ignore, "span.not-applied-fargate") == []

    add_rule(browser, "block-miners", "fargate-tasks", "block", "426")
    block = one(browser.driver, 'tr.rule[data-rule="block-miners"]')
    assert one(block, "span.not-applied-fargate").is_displayed()
    browser.screenshot("defend")
    assert page_errors(browser) == []


def add_rule(browser: Browser, name: str, collection: str, effect: str, checks: str) -> None:
    form = one(browser.driver, "form#new-rule")
    one(form, "input[name=name]").send_keys(name)
    Select(one(form, "select[name=collection]")).select_by_value(collection)
    Select(one(form, "select[name=effect]")).select_by_value(effect)
    one(form, "input[name=checks]").send_keys(checks)
    submit_and_wait(browser, one(form, "button[type=submit]"))
    assert every(browser.driver, "#error") == [], one(browser.driver, "#error").text
    one(browser.driver, f'tr.rule[data-rule="{name}"]')


# --- security and keyboard ----------------------------------------------------------------


def test_hostile_names_are_shown_as_text_and_never_run(world: World) -> None:
    browser = world.browser
    sign_in(world, DEPLOYED)
    wait_for(browser, "table#images")
    assert pwned(browser) is None
    hostile = [name for name in image_rows(browser) if SCRIPT in name and IMG in name]
    assert len(hostile) == 1, list(image_rows(browser))
    row = image_rows(browser)[hostile[0]]

    submit_and_wait(browser, one(row, "td.name a"))
    assert pwned(browser) is None
    assert SCRIPT in one(browser.driver, "h1#image-name").text
    shown = {one(finding, "td.path").text for finding in every(browser.driver, "tr.finding")}
    assert shown == set(HOSTILE_PATHS)
    with pytest.raises(NoSuchElementException):
        one(browser.driver, "main#content script")
    assert every(browser.driver, "main#content img") == []
    assert pwned(browser) is None
    assert page_errors(browser) == []


def test_filter_bar_by_keyboard(world: World) -> None:
    browser = world.browser
    sign_in(world, DEPLOYED)
    wait_for(browser, "form#filters")
    body = one(browser.driver, "body")
    body.click()
    search = one(browser.driver, "form#filters input[name=search]")
    for _ in range(60):  # the header's links first, then the filter bar
        browser.driver.switch_to.active_element.send_keys(Keys.TAB)
        if browser.driver.switch_to.active_element == search:
            break
    else:
        pytest.fail("Tab never reached the search field of the filter bar")
    html = one(browser.driver, "html")
    search.send_keys("fargate-task*", Keys.ENTER)
    replaced(browser, html)
    assert "search=fargate-task" in browser.path()
    assert p_name(world.scenario) in image_rows(browser)


@pytest.mark.parametrize(
    ("environ", "outcome"),
    [({}, pytest.skip.Exception), ({"CI": "true"}, pytest.fail.Exception)],
)
def test_without_chromium_the_tests_skip_except_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environ: dict[str, str], outcome: type
) -> None:
    monkeypatch.setattr(browser_support, "CHROMEDRIVER", tmp_path / "chromedriver")
    with pytest.raises(outcome, match="chromedriver absent"):
        browser_support.require_chromium(environ)


def test_a_refused_inline_script_is_seen(world: World) -> None:
    """What the tests above rely on: the page's CSP refuses an inline script, and the refusal
    reaches page_errors()."""
    browser = world.browser
    sign_in(world, DEFEND)
    assert page_errors(browser) == []
    browser.driver.execute_script(
        "const s = document.createElement('script');"
        "s.textContent = 'window.__pwned = 1';"
        "document.body.appendChild(s);"
    )
    assert pwned(browser) is None
    refused = page_errors(browser)
    assert refused and all("Content Security Policy" in message for message in refused), refused


def test_a_token_in_the_header_reads_without_signing_in(world: World) -> None:
    """Scripts read pages with a token (here set on every request through DevTools): a read
    token sees Deployed and the Defend page without its forms; an admin token gets the forms."""
    browser = world.browser
    browser.use_token(world.read_token)
    browser.open(DEPLOYED)
    assert p_name(world.scenario) in image_rows(browser)
    assert every(browser.driver, "form#login") == []
    browser.open(DEFEND)
    wait_for(browser, "table#rules")
    assert every(browser.driver, "form#new-collection") == []
    browser.use_token(world.admin_token)
    browser.open(DEFEND)
    wait_for(browser, "form#new-collection")
    assert page_errors(browser) == []
