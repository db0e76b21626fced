"""Monitor pages (Deployed images, one image's tabs, hosts, tasks) on SQLite and a real
PostgreSQL: the acceptance scenario through the pages, filters kept in links, empty states,
404s, refused parameters as pages (never a 500), and escaping of every reported name."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import ecs_scenario
import httpx
import pytest
from console_fixtures import ConsoleServer
from ecs_scenario import Scenario

from console.accounts import create_token
from console.kinds import Scope
from console.report_schema import ContainerRecord, TaskRecord, parse_report
from console.store import store_report

DEPLOYED = "/monitor/compliance/images/deployed"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
ROW = re.compile(
    r'<tr class="image-row" data-image-id="(\d+)">\s*<td class="name"><a href="([^"]*)">([^<]*)</a>'
    r"(.*?)</tr>",
    re.DOTALL,
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    if not ecs_scenario.DEFINITION.is_file():
        pytest.skip("../shared is absent")
    return ecs_scenario.run_scenario(tmp_path_factory.mktemp("ecs"))


class Browser:
    """The pages over HTTP with a read-scope token, as a monitoring script reads them."""

    def __init__(self, server: ConsoleServer) -> None:
        self.server = server
        self.token = create_token(server.db.engine, f"reader-{uuid.uuid4().hex[:8]}", [Scope.READ])

    def get(self, path: str, params: Any = None, *, auth: bool = True) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        return httpx.get(
            self.server.base_url + path,
            params=params,
            headers=headers,
            timeout=30,
            follow_redirects=False,
        )

    def page(self, path: str, params: Any = None) -> str:
        answer = self.get(path, params)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        return answer.text


@dataclasses.dataclass
class Row:
    image_id: int
    href: str
    name: str
    hosts: int
    fargate: bool
    cells: str


def rows(page: str) -> list[Row]:
    found = []
    for image_id, href, name, rest in ROW.findall(page):
        hosts = re.search(r'<td class="hosts num">(\d+)</td>', rest)
        assert hosts is not None
        found.append(
            Row(
                int(image_id),
                href,
                html.unescape(name),
                int(hosts[1]),
                "badge-fargate" in rest,
                rest,
            )
        )
    return found


def names(page: str) -> set[str]:
    return {row.name for row in rows(page)}


def ingest_all(server: ConsoleServer, scenario: Scenario) -> None:
    for report in scenario.reports:
        answer = server.post(json.dumps(report).encode())
        assert answer.status_code == 201, answer.text


@pytest.fixture
def browser(console_server: ConsoleServer) -> Browser:
    return Browser(console_server)


@pytest.fixture
def loaded(console_server: ConsoleServer, scenario: Scenario) -> Browser:
    """The scenario's four reports, and an image last seen 30 days ago (not deployed)."""
    ingest_all(console_server, scenario)
    base = parse_report(scenario.report("T3"))
    old = ContainerRecord("old", "old-docker-id", "registry.example/old:1", "sha256:" + "0" * 64)
    report = dataclasses.replace(
        base,
        scan_id=uuid.uuid4(),
        container=old,
        task=dataclasses.replace(base.task, containers=(old,)) if base.task else None,
    )
    store_report(
        console_server.db.engine, report, token_id=None, now=datetime.now(UTC) - timedelta(days=30)
    )
    return Browser(console_server)


def p_and_q(scenario: Scenario) -> tuple[str, str]:
    return scenario.images["P"][0], scenario.images["Q"][0]


# --- Deployed -------------------------------------------------------------------------------


def test_deployed_lists_deployed_images_only(loaded: Browser, scenario: Scenario) -> None:
    p, q = p_and_q(scenario)
    page = loaded.page(DEPLOYED)
    assert names(page) == {p, q}
    assert "registry.example/old:1" not in page
    by_name = {row.name: row for row in rows(page)}
    assert by_name[p].hosts == 3 and by_name[p].fargate
    assert by_name[q].hosts == 1 and not by_name[q].fargate
    assert by_name[p].href == f"/monitor/compliance/images/{by_name[p].image_id}"
    assert '<form id="filters" method="get"' in page and 'id="apply-filters"' in page
    # P's 426 finding: its highest severity cell is marked, its check listed.
    assert re.search(r'class="sev sev-(critical|high)[^"]* highest', by_name[p].cells)
    assert re.search(r'<td class="checks">[^<]*426', by_name[p].cells)
    assert "highest" not in by_name[q].cells
    # Failed checks, not the checks that ran: Q is clean.
    assert '<td class="checks"><span class="none">none</span></td>' in by_name[q].cells
    assert '<td class="last-scanned"><time datetime=' in by_name[p].cells
    # `deployed` is not the page's to change: asking for it is refused, not obeyed.
    assert loaded.get(DEPLOYED, {"deployed": "false"}).status_code == 422


def test_fargate_and_search_select_exactly_p(loaded: Browser, scenario: Scenario) -> None:
    p, _ = p_and_q(scenario)
    page = loaded.page(DEPLOYED, {"fargate": "true", "search": "fargate-task OR fargate-task*"})
    [row] = rows(page)
    assert (row.name, row.hosts, row.fargate) == (p, 3, True)
    # The filters are kept in the form, so the URL is bookmarkable and the form shows it.
    assert '<option value="true" selected>Fargate</option>' in page
    assert 'value="fargate-task OR fargate-task*"' in page
    # A form submission sends empty fields: they are no filter, not an error.
    page = loaded.page(DEPLOYED, {"fargate": "", "hosts": "", "search": ""})
    assert names(page) == set(p_and_q(scenario))


def test_hosts_filter(loaded: Browser, scenario: Scenario) -> None:
    p, q = p_and_q(scenario)
    assert names(loaded.page(DEPLOYED, {"hosts": scenario.tasks["T1"].task_id})) == {p}
    assert names(loaded.page(DEPLOYED, {"hosts": scenario.tasks["T4"].task_id})) == {q}
    assert names(loaded.page(DEPLOYED, {"hosts": scenario.instance})) == {p, q}


def test_sort_and_pages_keep_the_filters(loaded: Browser, scenario: Scenario) -> None:
    p, q = p_and_q(scenario)
    params = {"hosts": scenario.instance, "sort": "name", "per_page": "1"}
    first = loaded.page(DEPLOYED, params)
    assert [row.name for row in rows(first)] == sorted([p, q])[:1]
    assert '<nav class="pagination"' in first
    nexts = re.findall(r'<a rel="next" href="([^"]*)"', first)
    assert len(nexts) == 1
    following = html.unescape(nexts[0])
    assert "hosts=" in following and "sort=name" in following and "page=2" in following
    second = loaded.page(following)
    assert [row.name for row in rows(second)] == sorted([p, q])[1:]
    # The sort headers keep the filters and say how the table is sorted.
    headers = [
        html.unescape(h) for h in re.findall(r'<th scope="col"[^>]*><a href="([^"]*)"', first)
    ]
    assert headers and all("hosts=" in h and "per_page=1" in h for h in headers)
    assert 'aria-sort="ascending"' in first
    assert any("sort=-name" in h for h in headers)  # again on the same key reverses it
    ordered = loaded.page(DEPLOYED, {"sort": "-hosts"})
    assert [row.name for row in rows(ordered)] == [p, q]


def test_empty_states_say_why(loaded: Browser) -> None:
    nothing = loaded.page(DEPLOYED, {"search": "no-such-image"})
    assert 'id="empty-state"' in nothing and "Nothing matches the filter" in nothing
    assert f'<a href="{DEPLOYED}">Clear the filters</a>' in nothing
    assert 'id="images"' not in nothing


def test_empty_store_says_no_scans_yet(browser: Browser) -> None:
    page = browser.page(DEPLOYED)
    assert 'id="empty-state"' in page and "No scans yet" in page
    assert "Nothing matches" not in page


# --- one image ------------------------------------------------------------------------------


def p_id(browser: Browser, scenario: Scenario) -> int:
    p, _ = p_and_q(scenario)
    return next(row.image_id for row in rows(browser.page(DEPLOYED)) if row.name == p)


def test_details_compliance_shows_the_miner(loaded: Browser, scenario: Scenario) -> None:
    image_id = p_id(loaded, scenario)
    page = loaded.page(f"/monitor/compliance/images/{image_id}")
    assert f'<h1 id="image-name">{html.escape(scenario.images["P"][0], quote=False)}</h1>' in page
    for tab in ("vulnerabilities", "compliance", "fargate-tasks", "hosts"):
        assert f'id="tab-{tab}" href="/monitor/compliance/images/{image_id}?tab={tab}"' in page
    assert "Environment &gt; Fargate Tasks" in page
    assert '<section id="compliance">' in page
    section = page[page.index('<section class="check" data-check="426"') :]
    section = section[: section.index("</section>")]
    assert "Image contains binaries used for crypto mining" in section
    assert re.search(
        r'<tr class="finding[^"]*">.*?<td class="path"><code>/tmp/xmrig</code>', section, re.DOTALL
    )
    for cell in ("severity", "package", "kind", "rule", "effect"):
        assert f'<td class="{cell}' in section
    same = loaded.page(f"/monitor/compliance/images/{image_id}", {"tab": "compliance"})
    assert same == page or "/tmp/xmrig" in same


def test_fargate_tab_lists_t1_and_t2(loaded: Browser, scenario: Scenario) -> None:
    image_id = p_id(loaded, scenario)
    page = loaded.page(f"/monitor/compliance/images/{image_id}", {"tab": "fargate-tasks"})
    assert '<section id="fargate-tasks">' in page
    tasks = re.findall(r'<tr class="task">\s*<td class="task-id"><code>([^<]*)</code>', page)
    t1, t2 = scenario.tasks["T1"], scenario.tasks["T2"]
    assert set(tasks) == {t1.task_id, t2.task_id}
    assert f'<td class="family-revision">{t1.family}:{t1.revision}</td>' in page
    assert '<td class="family-revision">fargate-task-web:7</td>' in page
    assert f'<td class="container">{t1.container}</td>' in page
    assert '<td class="last-seen">' in page and '<td class="cluster">' in page


def test_hosts_tab_and_vulnerabilities_state(loaded: Browser, scenario: Scenario) -> None:
    image_id = p_id(loaded, scenario)
    hosts = loaded.page(f"/monitor/compliance/images/{image_id}", {"tab": "hosts"})
    assert len(re.findall(r'<tr class="host">', hosts)) == 3
    assert scenario.instance in hosts
    vulns = loaded.page(f"/monitor/compliance/images/{image_id}", {"tab": "vulnerabilities"})
    assert '<p id="no-vulnerability-data">No vulnerability data:' in vulns
    assert '<section id="vulnerabilities">' in vulns
    assert not re.search(r"<td[^>]*>0</td>", vulns)  # never a zero for what is unknown


@pytest.mark.parametrize(
    "segment", ["999999", "0", "abc", "12345678901", "2147483648", "-1", "\uff11"]
)
def test_unknown_or_malformed_image_ids_are_404(browser: Browser, segment: str) -> None:
    answer = browser.get(f"/monitor/compliance/images/{segment}")
    assert answer.status_code == 404 and "No image with this id" in answer.text
    assert answer.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (DEPLOYED, {"fargate": "yes"}),
        (DEPLOYED, {"search": "a b"}),
        (DEPLOYED, {"search": "*a"}),
        (DEPLOYED, {"hosts": "x" * 600}),
        (DEPLOYED, {"sort": "nope"}),
        (DEPLOYED, {"page": "0"}),
        (DEPLOYED, {"page": "9" * 40}),
        (DEPLOYED, {"per_page": "100000"}),
        (DEPLOYED, {"farget": "true"}),
        (DEPLOYED, [("search", "a"), ("search", "b")]),
        ("/monitor/compliance/images/1", {"tab": "nope"}),
        ("/monitor/compliance/images/1", {"x": "1"}),
        ("/monitor/compliance/hosts", {"sort": "-nope"}),
        ("/monitor/compliance/hosts", {"hosts": "OR"}),
        ("/monitor/compliance/hosts/1", {"x": "1"}),
    ],
)
def test_bad_parameters_are_a_422_page(browser: Browser, path: str, params: Any) -> None:
    answer = browser.get(path, params)
    assert answer.status_code == 422, answer.text
    assert 'id="error"' in answer.text and answer.headers["content-type"].startswith("text/html")


def test_without_a_token_the_pages_redirect_to_login(browser: Browser) -> None:
    for path in (DEPLOYED, "/monitor/compliance/images/1", "/monitor/compliance/hosts"):
        answer = browser.get(path, {"search": "a"}, auth=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login?next=")


def test_an_ingest_token_is_refused(browser: Browser, console_server: ConsoleServer) -> None:
    answer = httpx.get(
        console_server.base_url + DEPLOYED,
        headers={"Authorization": f"Bearer {console_server.token}"},
        timeout=30,
    )
    assert answer.status_code == 403


# --- hosts and tasks ------------------------------------------------------------------------


def test_hosts_listing_host_and_task_pages(loaded: Browser, scenario: Scenario) -> None:
    listing = loaded.page("/monitor/compliance/hosts")
    ids = {
        html.unescape(name): int(number)
        for number, name in re.findall(
            r'<tr class="host" data-host-id="(\d+)">\s*<td class="host-name"><a href="[^"]*">([^<]*)</a>',
            listing,
        )
    }
    t1 = scenario.tasks["T1"]
    assert {t1.task_id, scenario.tasks["T2"].task_id, scenario.instance} <= set(ids)
    only = loaded.page("/monitor/compliance/hosts", {"hosts": t1.task_id})
    assert t1.task_id in only and scenario.instance not in only
    sorted_page = loaded.page("/monitor/compliance/hosts", {"sort": "name", "hosts": "*"})
    assert 'aria-sort="ascending"' in sorted_page
    assert "Nothing matches the filter" in loaded.page("/monitor/compliance/hosts", {"hosts": "zz"})

    host = loaded.page(f"/monitor/compliance/hosts/{ids[scenario.instance]}")
    assert scenario.images["P"][0] in host and scenario.images["Q"][0] in host
    assert "/tmp/xmrig" in host and 'data-check="426"' in host
    tasks = re.findall(r'href="/monitor/compliance/tasks/(\d+)">([^<]*)</a>', host)
    assert {name for _, name in tasks} >= {
        scenario.tasks["T3"].task_id,
        scenario.tasks["T4"].task_id,
    }

    fargate = loaded.page(f"/monitor/compliance/hosts/{ids[t1.task_id]}")
    [(task_row, _)] = set(
        re.findall(r'href="/monitor/compliance/tasks/(\d+)">([^<]*)</a>', fargate)
    )
    task = loaded.page(f"/monitor/compliance/tasks/{task_row}")
    assert f"{t1.family}:{t1.revision}" in task and t1.container in task
    assert "/tmp/xmrig" in task
    assert loaded.get("/monitor/compliance/hosts/99999").status_code == 404
    assert loaded.get("/monitor/compliance/tasks/99999").status_code == 404
    assert loaded.get("/monitor/compliance/tasks/x").status_code == 404


# --- escaping -------------------------------------------------------------------------------


def test_reported_names_are_escaped_on_every_page(
    console_server: ConsoleServer, scenario: Scenario
) -> None:
    base = parse_report(scenario.report("T1"))
    assert base.task is not None and base.findings
    name = f"registry.example/{SCRIPT}:{IMG}"
    container = ContainerRecord(f"app{SCRIPT}", "hostile-docker-id", name, "sha256:" + "ab" * 32)
    task_id = "f" * 32
    task = TaskRecord(
        arn=f"arn:aws:ecs:us-east-1:1:task/c/{task_id}",
        task_id=task_id,
        family=f"fam{SCRIPT}{IMG}",
        revision="1",
        cluster=f"cluster{IMG}",
        launch_type="FARGATE",
        availability_zone=None,
        containers=(container,),
    )
    finding = dataclasses.replace(base.findings[0], path=f"/tmp/{SCRIPT}{IMG}", title=f"t{SCRIPT}")
    report = dataclasses.replace(
        base,
        scan_id=uuid.uuid4(),
        host=task_id,
        task=task,
        container=container,
        image=None,
        findings=(finding,),
    )
    store_report(console_server.db.engine, report, token_id=None)
    browser = Browser(console_server)
    listing = browser.page(DEPLOYED)
    [row] = rows(listing)
    host_page = browser.page("/monitor/compliance/hosts")
    host_id = re.search(r'data-host-id="(\d+)"', host_page)
    assert host_id is not None
    pages = [listing, browser.page(DEPLOYED, {"search": "fam*"}), host_page]
    for tab in ("compliance", "fargate-tasks", "hosts", "vulnerabilities"):
        pages.append(browser.page(f"/monitor/compliance/images/{row.image_id}", {"tab": tab}))
    host = browser.page(f"/monitor/compliance/hosts/{host_id[1]}")
    pages.append(host)
    task_row = re.search(r'href="/monitor/compliance/tasks/(\d+)"', host)
    assert task_row is not None
    pages.append(browser.page(f"/monitor/compliance/tasks/{task_row[1]}"))
    for number, page in enumerate(pages):
        assert "<script" not in page, number
        assert "<img" not in page, number
        assert "onerror=alert(2)>" not in page.replace("&gt;", ""), number
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in listing
    assert "&lt;img src=x onerror=alert(2)&gt;" in pages[4]  # the task family, cluster
    assert "/tmp/&lt;script&gt;" in pages[3]
    # A filter value that holds HTML is given back escaped in the form.
    echoed = browser.page(DEPLOYED, {"search": "a<script>"})
    assert "<script" not in echoed and 'value="a&lt;script&gt;"' in echoed


def test_pages_carry_the_security_headers(browser: Browser) -> None:
    answer = browser.get(DEPLOYED)
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"
    assert "<style" not in answer.text and " style=" not in answer.text


def test_the_pages_bench_runs(tmp_path: Any) -> None:
    """bench/console_pages.py on a small SQLite fleet, so that it cannot rot."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "console_pages.py"
    spec = importlib.util.spec_from_file_location("console_pages_bench", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "pages.json"
    assert (
        bench.main(["--engines", "sqlite", "--runs", "2", "--images", "100", "--json", str(out)])
        == 0
    )
    [result] = json.loads(out.read_text())["results"]
    assert result["deployed_images"] == 80
    assert result["cases"]["default"]["rows"] == 50 and result["cases"]["last page"]["rows"] == 0
