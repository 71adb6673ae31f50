"""The HTML report (`make report`) opened in headless Chromium: every figure and table is there.

The tiny study (config/studies/tiny.yaml) runs in a temporary folder, Snakemake writes its report, and a
real browser opens it. The expected items come from the study and the workflow, not from a list
kept here: the study's tasks and fixed outputs, and every rule that declares a `report()` output in
workflow/rules/*.smk. Chromium and chromedriver are Debian's packages (`chromium`,
`chromium-driver`); without them the test skips, except under CI (CI=true), where it fails.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from ci import unavailable

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "studies" / "tiny.yaml"
RESULTS = "results"  # the study's results folder, relative to its temporary working folder
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.slow


def _unavailable(reason: str) -> None:
    """Skip, but fail under CI: CI installs the browser, so a skip there would hide a broken check."""
    unavailable(f"{reason} (Debian: apt-get install chromium chromium-driver)")


def _browser_paths() -> tuple[str, str]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        missing = [name for name, path in (("chromium", chromium), ("chromedriver", chromedriver)) if not path]
        _unavailable(f"{' and '.join(missing)} not found on PATH")
    try:
        import selenium  # noqa: F401  (the test extra)
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    return chromium, chromedriver


def _snakemake(workdir: Path, data_dir: Path, *args: str) -> None:
    """Snakemake on the tiny study as `make study` / `make report` run it, in its own folder."""
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "2",
        "--workflow-profile", str(REPO / "workflow" / "profiles" / "local"),
        "--configfile", str(CONFIG), "--config", f"results_dir={RESULTS}", *args,
    ]
    # The rules call `promptworth`: the environment's commands first on PATH, as the Makefile does.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PROMPTWORTH_DATA": str(data_dir)}
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    return _browser_paths()


@pytest.fixture(scope="module")
def study(browser_paths: tuple[str, str], data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study's working folder, with its results and report.html (checked for the browser
    first: no point in a four-minute study when it cannot be opened)."""
    workdir = tmp_path_factory.mktemp("report")
    _snakemake(workdir, data_dir)
    _snakemake(workdir, data_dir, "--report", "report.html")
    return workdir


@pytest.fixture(scope="module")
def page(study: Path, browser_paths: tuple[str, str]) -> Iterator[WebDriver]:
    """The report open in headless Chromium, rendered (the React app has built its menu)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = browser_paths[0]
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=browser_paths[1]), options=options)
    try:
        driver.get((study / "report.html").as_uri())
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return document.querySelector('#loading-screen').style.display === 'none'"
            " && document.querySelectorAll('nav li a').length > 0"))
        yield driver
    finally:
        driver.quit()


def expected_from_study() -> set[str]:
    """Figures and tables every study has: one figure per task, the overview and the methods
    figure, the run table, the two paper tables and the methods table."""
    tasks = yaml.safe_load(CONFIG.read_text())["tasks"]
    figures = {f"{RESULTS}/figures/{name}.png" for name in [*tasks, "overview", "methods"]}
    tables = {f"{RESULTS}/runs.csv", f"{RESULTS}/tables/advantage.md", f"{RESULTS}/tables/lmbff.md",
              f"{RESULTS}/tables/methods.md"}
    return figures | tables


def rules_declaring_report() -> dict[str, set[str]]:
    """Rule name -> the categories of its `report()` outputs, read from workflow/rules/*.smk."""
    declared: dict[str, set[str]] = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        # a rule's block runs from its header to the next header
        blocks = re.split(r"^\s*(?:rule|checkpoint)\s+(\w+)\s*:", smk.read_text(), flags=re.MULTILINE)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            if "report(" in body:
                declared[name] = set(re.findall(r"category\s*=\s*[\"']([^\"']+)[\"']", body))
    return declared


def rules_of_study(workdir: Path) -> set[str]:
    """The rules the workflow defines for the tiny study (Snakemake's `--list-rules`)."""
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile", str(CONFIG),
        "--config", f"results_dir={RESULTS}", "--list-rules",
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=True)
    return {line.split()[0] for line in result.stdout.splitlines() if line.strip() and not line[0].isspace()}


def report_items(page: WebDriver) -> dict[str, dict]:
    """Snakemake's own list of the report's items (the page's `results`), by path."""
    return page.execute_script("return results")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    return struct.unpack(">II", data[16:24])  # IHDR: width, height


def decode_data_uri(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    assert header.startswith("data:") and header.endswith(";base64"), header[:80]
    return base64.b64decode(payload)


def click(page: WebDriver, element: WebElement) -> None:
    """Click as a reader does, once the element is what the pointer would hit: the menu animates
    its width when its contents change, and a click during that lands on the page beside it."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(page, 10).until(lambda d: d.execute_script(
        "if (document.querySelector('nav').getAnimations({subtree: true}).length > 0) return false;"
        "const r = arguments[0].getBoundingClientRect();"
        "const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);"
        "return r.width > 0 && hit !== null && arguments[0].contains(hit);", element),
        "element never became clickable")
    element.click()


def click_text(page: WebDriver, css: str, text: str, required: bool = True) -> bool:
    """Click the element under `css` whose visible text is `text` (found in one call to the page)."""
    element = page.execute_script(
        "return [...document.querySelectorAll(arguments[0])].find(e => e.textContent.trim() === arguments[1]);",
        css, text)
    assert element is not None or not required, f"no {css!r} reading {text!r} on the page"
    if element is not None:
        click(page, element)
    return element is not None


def open_listing(page: WebDriver, category: str, subcategory: str, several: bool) -> None:
    """The menu's listing of one (sub)category: back through the breadcrumbs when they name the
    category (which keeps the main view), else from the home menu."""
    if not click_text(page, "nav ol li a", category, required=False):
        click(page, page.find_element("css selector", "nav ol li a"))  # the breadcrumbs' home
        click_text(page, "nav li a", category)
    if several:
        click_text(page, "nav li a", subcategory)


def each_item(page: WebDriver, mime_prefix: str = "") -> Iterator[tuple[str, dict, WebElement]]:
    """(path, entry, its row in the menu) for every report item whose MIME type starts with
    `mime_prefix`, reached as a reader does: the category in the menu, then the subcategory if
    there are several. The listing is opened again when the caller's clicks have left it."""
    items = report_items(page)
    categories: dict[str, dict[str, list[str]]] = page.execute_script("return categories")
    for category, subcategories in categories.items():
        for subcategory, paths in subcategories.items():
            for path in (p for p in paths if items[p]["mime_type"].startswith(mime_prefix)):
                row = row_of(page, path, items[path])
                if row is None:
                    open_listing(page, category, subcategory, several=len(subcategories) > 1)
                    row = row_of(page, path, items[path])
                assert row is not None, f"{path} is not listed under {category}"
                yield path, items[path], row


def row_of(page: WebDriver, path: str, entry: dict) -> WebElement | None:
    """The menu's row of one item (its path, or its labels when it has labels), if it is listed now."""
    cells = list(entry["labels"].values()) if entry.get("labels") else [path]
    rows = page.find_elements("css selector", "nav table tbody tr")
    texts = page.execute_script(
        "return arguments[0].map(r => [...r.querySelectorAll('td')].map(c => c.textContent.trim()));", rows)
    for row, row_texts in zip(rows, texts):
        if all(cell in row_texts for cell in cells):
            return row
    return None


def view_buttons(row: WebElement) -> list[WebElement]:
    """The row's buttons: view (eye) and info."""
    return row.find_elements("css selector", "td:last-child a")


def test_report_lists_every_figure_and_table_of_the_study(page: WebDriver, study: Path):
    items = report_items(page)
    missing = expected_from_study() - set(items)
    assert not missing, f"figures/tables of the study missing from the report: {sorted(missing)}"
    # Every rule that declares report() outputs has them in the report (a rule left out of the
    # DAG, e.g. not requested by `all`, would silently drop its items).
    by_rule: dict[str, set[str]] = {}
    for entry in items.values():
        by_rule.setdefault(entry["job_properties"]["rule"], set()).add(entry["name"])
    # (a rule defined only for other studies, e.g. lmbff_table for kshot splits, is not expected)
    declared = {name: categories for name, categories in rules_declaring_report().items()
                if name in rules_of_study(study)}
    assert "lmbff_table" in rules_declaring_report() and "lmbff_table" not in declared
    assert declared.keys() <= by_rule.keys(), f"rules with report() but no item: {sorted(declared.keys() - by_rule.keys())}"
    categories = page.execute_script("return categories")
    assert set().union(*declared.values()) <= set(categories), categories
    for path in items:
        assert (study / path).is_file(), f"report item {path} is not a file the study wrote"


def test_every_item_is_listed_in_its_category(page: WebDriver):
    listed = {path for path, _, row in each_item(page) if row.is_displayed()}
    assert listed == set(report_items(page))


def test_every_figure_is_shown(page: WebDriver, study: Path):
    """Clicking a figure's eye button shows the image itself: loaded, the file's own pixels."""
    from selenium.webdriver.support.ui import WebDriverWait

    shown = set()
    for path, entry, row in each_item(page, "image/"):
        click(page, view_buttons(row)[0])
        size = WebDriverWait(page, 30).until(lambda d: d.execute_script(
            "const img = [...document.images].find(i => i.src === arguments[0] && i.complete);"
            "return img && img.naturalWidth > 0 && img.getBoundingClientRect().width > 0"
            " && [img.naturalWidth, img.naturalHeight];", entry["data_uri"]), f"{path} is not shown")
        assert tuple(size) == png_size((study / path).read_bytes()), path
        shown.add(path)
        if path.endswith("overview.png"):  # for a look at the report: pytest's temporary folder
            page.save_screenshot(str(study / "report-overview.png"))
    assert {p for p in expected_from_study() if p.endswith(".png")} <= shown


def test_every_table_is_offered_with_its_content(page: WebDriver, study: Path):
    """Snakemake's report offers a table (csv, md) as a download: its link carries the file's bytes.
    (An HTML or PDF item would open in a frame instead.)"""
    offered = set()
    for path, entry, row in each_item(page):
        if entry["mime_type"].startswith("image/"):
            continue
        button = view_buttons(row)[0]
        if entry["mime_type"] in ("text/html", "application/pdf"):
            click(page, button)
            assert page.execute_script(
                "return [...document.querySelectorAll('iframe')].some(f => f.src === arguments[0])",
                entry["data_uri"]), f"{path} is not shown"
        else:
            assert button.get_attribute("download") == Path(path).name, path
            assert button.get_attribute("href") == entry["data_uri"], path
        assert decode_data_uri(entry["data_uri"]) == (study / path).read_bytes(), path
        offered.add(path)
    assert {p for p in expected_from_study() if not p.endswith(".png")} <= offered


def test_every_item_shows_its_caption(page: WebDriver):
    """The info button of each item shows a Description: its caption from workflow/report/*.rst."""
    for path, entry, row in each_item(page):
        click(page, view_buttons(row)[-1])
        caption = page.execute_script(
            "const div = document.createElement('div'); div.innerHTML = arguments[0];"
            "return div.textContent;", entry["caption"] or "")
        assert caption.strip(), f"{path} has no caption"
        shown = " ".join(page.find_element("css selector", "nav").text.split())
        assert "DESCRIPTION" in shown.upper() and " ".join(caption.split()) in shown, path
