"""The report of real runs: what it says after the features changed, and that a browser shows every image."""

import collections
import re

import pytest

from segmentation import report
from segmentation.report import data as report_data
from segmentation.pipeline import run_once
from segmentation.settings import load_settings
from tests.conftest import published_assignment
from tests.browser import chromium, chromium_command

# After the page loads, list every image: loaded or broken, its natural size, its alt text's length.
IMAGE_CHECK = """
<script>
window.addEventListener("load", () => {
  const lines = Array.from(document.images, (image) =>
    `${image.complete && image.naturalWidth > 0 ? "loaded" : "broken"} ${image.naturalWidth}x${image.naturalHeight}`
    + ` alt=${(image.getAttribute("alt") || "").trim().length}`);
  const out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = lines.join("\\n");
  document.body.appendChild(out);
});
</script>
"""


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", gap_references=2,
                         stability_resamples=2, write_report=False, **overrides)


def test_a_run_on_other_features_reports_renumbered_segments_not_moves(engine, customers_csv):
    first = run_once(engine, settings(), customers_csv)
    second = run_once(engine, settings(features="age,spending_score"), None, new_version=True)
    third = run_once(engine, settings(), None, new_version=True)
    with engine.connect() as connection:
        renumbered = report_data.load_report_data(connection, second.run_id)
        back = report_data.load_report_data(connection, third.run_id)
    assert renumbered.previous_run_id == first.run_id and not renumbered.previous_comparable
    assert renumbered.comparable_run_id is None
    assert renumbered.previous_features == ("annual_income_k", "spending_score")
    page = report.render_report(renumbered)
    assert "numbered afresh" in page and "Customers moved between segments" not in page
    assert "(PSI) and centre shifts are blank" in page
    # back on the first features: ids carried over from run 1, PSI against it, run 2 in between
    assert back.previous_run_id == second.run_id and not back.previous_comparable
    assert back.comparable_run_id == first.run_id
    assert f"compared with run {first.run_id}, the latest published run on the same features" in \
        report.render_report(back)


@pytest.mark.chromium
def test_every_image_of_the_report_loads_in_headless_chromium(engine, customers_csv, tmp_path):
    browser = chromium()
    run_once(engine, settings(), customers_csv)
    outcome = run_once(engine, settings(), customers_csv)
    with engine.connect() as connection:
        path = report.write_report(connection, outcome.run_id, tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    expected = page.count("<img")
    assert expected >= 5
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    dom = chromium_command(browser, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom",
                           checked.as_uri()).stdout
    found = re.search(r'<pre id="image-check">(.*?)</pre>', dom, re.S)
    assert found, "the check script did not run"
    lines = found.group(1).strip().splitlines()
    assert len(lines) == expected
    for line in lines:
        state, size, alt = line.split()
        width, height = (int(value) for value in size.split("x"))
        assert state == "loaded" and width >= 300 and height >= 150, line
        assert alt != "alt=0", line
    shot = tmp_path / "report.png"
    chromium_command(browser, tmp_path / "profile2", "--window-size=1300,3000", f"--screenshot={shot}",
                     path.as_uri())
    assert shot.stat().st_size > 50_000  # text, tables and plots drawn, not a blank page


def test_moves_read_by_a_left_join_equal_the_full_join_of_both_runs(engine, customers_csv, tmp_path):
    lines = customers_csv.read_text(encoding="utf-8").splitlines()
    # run 2: the last 25 customers are gone, 12 new ones came, and 40 changed their spending
    changed = [
        line if index % 7 else ",".join([*line.split(",")[:4], str(100 - int(line.split(",")[4]))])
        for index, line in enumerate(lines[1:-25], start=1)
    ]
    new = [f"{9000 + index},Female,30,{15 + index},{80 - index}" for index in range(12)]
    second_csv = tmp_path / "second.csv"
    second_csv.write_text("\n".join([lines[0], *changed, *new]) + "\n", encoding="utf-8")
    first = run_once(engine, settings(k=5), customers_csv)
    earlier = dict(published_assignment(engine, columns="customer_id, segment_id"))
    second = run_once(engine, settings(k=5), second_csv)
    latest = dict(published_assignment(engine, columns="customer_id, segment_id"))
    with engine.connect() as connection:
        moves = report_data.read_transitions(connection, second.run_id, first.run_id)
    pairs = collections.Counter((earlier.get(customer), latest.get(customer)) for customer in earlier.keys() | latest.keys())
    expected = sorted(((a, b, n) for (a, b), n in pairs.items()),
                      key=lambda row: (row[0] is None, row[0] or 0, row[1] is None, row[1] or 0))

    def key(value):
        return None if value is None or value != value else int(value)

    assert [(key(a), key(b), int(n)) for a, b, n in moves.itertuples(index=False)] == [
        (key(a), key(b), int(n)) for a, b, n in expected
    ]
    assert sum(n for a, b, n in expected if a is None) == 12 and sum(n for a, b, n in expected if b is None) == 25


# After the page loads: each segment card's width and its paragraphs' heights, and whether any
# table is wider than the page (a table a reader must scroll sideways to read).
LAYOUT_CHECK = """
<script>
window.addEventListener("load", () => {
  const lines = Array.from(document.querySelectorAll("article.segment"), (card) =>
    `card ${card.id} ${card.getBoundingClientRect().width} ${card.querySelector(".apart").getBoundingClientRect().height}`);
  const page = document.body.getBoundingClientRect().width;
  document.querySelectorAll("section table").forEach((table, index) =>
    lines.push(`table ${index} ${table.getBoundingClientRect().width <= page + 1 ? "fits" : "overflows"}`));
  const out = document.createElement("pre");
  out.id = "layout-check";
  out.textContent = lines.join("\\n");
  document.body.appendChild(out);
});
</script>
"""


def test_a_fixed_k_of_ten_reads_segments_first_without_one_point_charts(engine, customers_csv):
    # ten segments in five groups: the health gate would hold them, so forced, as a marketer asked
    outcome = run_once(engine, settings(k=10, force_publish=True), customers_csv)
    with engine.connect() as connection:
        data = report_data.load_report_data(connection, outcome.run_id)
    page = report.render_report(data)
    assert data.run.k_selection == "fixed" and len(data.evaluations) == 1
    assert "model-selection criteria" not in page  # the six charts would each hold one point
    assert "fixed at 10 (segment run --k 10, or the k setting)" in page
    sections = re.findall(r"<section id='([^']+)'>", page)
    assert sections.index("the-segments") < sections.index("about-this-run") < sections.index(
        "choosing-the-number-of-segments") < sections.index("glossary")
    cards = re.findall(r"<article class='segment' id='segment-(\d+)'", page)
    assert len(cards) == 10
    body = page.split("<body>")[1]
    for name in data.profiles["segment_name"]:
        assert body.index(name.replace("'", "&#x27;")) < body.index("Seed (random_state)")
    assert data.run.forced_reason and body.index("Published despite the health gate") < body.index("<section")


@pytest.mark.chromium
def test_ten_segments_lay_out_in_readable_cards_in_headless_chromium(engine, customers_csv, tmp_path):
    browser = chromium()
    outcome = run_once(engine, settings(k=10, force_publish=True), customers_csv)
    with engine.connect() as connection:
        path = report.write_report(connection, outcome.run_id, tmp_path / "report.html")
    checked = tmp_path / "checked.html"
    checked.write_text(path.read_text(encoding="utf-8").replace("</body>", LAYOUT_CHECK + "</body>"),
                       encoding="utf-8")
    dom = chromium_command(browser, tmp_path / "profile", "--window-size=1280,3000", "--virtual-time-budget=10000",
                           "--dump-dom", checked.as_uri()).stdout
    found = re.search(r'<pre id="layout-check">(.*?)</pre>', dom, re.S)
    assert found, "the check script did not run"
    lines = found.group(1).strip().splitlines()
    cards = [line.split() for line in lines if line.startswith("card ")]
    assert len(cards) == 10
    for _, card, width, apart_height in cards:
        # at least half a 1280-pixel window each (two cards a row), so what sets a segment
        # apart reads in a few full lines, not a word a line
        assert float(width) >= 450, (card, width)
        assert float(apart_height) <= 6 * 24, (card, apart_height)
    tables = [line for line in lines if line.startswith("table ")]
    assert tables and all(line.endswith("fits") for line in tables), tables
