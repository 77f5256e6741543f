"""The HTML report follows the run's declaration: no database, `ReportData` built by hand."""

from __future__ import annotations

import dataclasses
import html
import re
import types

import numpy as np
import pandas as pd
import pytest

from segmentation import report
from segmentation.report import data as report_data
from segmentation.dataset import MALL, Column, Dataset
from segmentation.palette import segment_color

# Each test renders a report with matplotlib (seconds each): left to the full suite, out of the
# fast subset (`-m "not slow"`); run this file itself when working on the report.
pytestmark = pytest.mark.slow

BANK = Dataset(
    id_column="account_no",
    id_type="text",
    columns=(
        Column("income", "Income", "number", "income", unit="$", minimum=0, transform="log"),
        Column("balance", "Balance", "number", "balance", unit="$", minimum=0, transform="log"),
        Column("tenure", "Tenure", "whole", "tenure", unit="years", minimum=0),
        Column("student", "Student", "boolean", "student"),
        Column("region", "Region", "category", "region", values=("North", "South", "East", "West")),
    ),
)

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,[A-Za-z0-9+/=]+">')


def images(page: str) -> list[str]:
    """The alt text of every image; every <img is one of them."""
    alts = [html.unescape(alt) for alt in IMG.findall(page)]
    assert len(alts) == page.count("<img")
    return alts


# --- hand-made runs ---------------------------------------------------------------------------


def mall_customers(rng: np.random.Generator, segment_ids: list[int], per_segment: int = 60) -> pd.DataFrame:
    frames = []
    for position, segment_id in enumerate(segment_ids):
        female = 0.3 + 0.2 * (position % 3)  # up to three distinct mixes, repeated for more segments
        frames.append(pd.DataFrame({
            "segment_id": segment_id,
            "gender": rng.choice(["Female", "Male"], per_segment, p=[female, 1 - female]),
            "age": rng.integers(18, 70, per_segment).astype(float),
            "annual_income_k": rng.normal(30 + 40 * position, 8, per_segment).clip(1),
            "spending_score": rng.normal(80 - 30 * position, 8, per_segment).clip(1, 100).round(),
        }))
    return _finish(pd.concat(frames, ignore_index=True))


def bank_customers(rng: np.random.Generator, segment_ids: list[int], per_segment: int = 60) -> pd.DataFrame:
    frames = []
    for position, segment_id in enumerate(segment_ids):
        balance = rng.lognormal(6 + 1.5 * position, 0.6, per_segment)
        balance[:5] = 0.0  # log(1 + x) columns may hold zeros
        frames.append(pd.DataFrame({
            "segment_id": segment_id,
            "income": rng.lognormal(10 + 0.8 * position, 0.4, per_segment),
            "balance": balance,
            "tenure": rng.integers(0, 20, per_segment).astype(float),
            "student": list(rng.random(per_segment) < 0.6 - 0.25 * position),
            "region": rng.choice(["North", "South", "East", "West"], per_segment),
        }))
    customers = _finish(pd.concat(frames, ignore_index=True))
    customers["student"] = customers["student"].astype(object)
    customers.loc[3, "student"] = None  # unknown
    customers.loc[4, "region"] = None
    return customers


def _finish(customers: pd.DataFrame) -> pd.DataFrame:
    customers.insert(0, "customer_id", [f"c{index}" for index in range(len(customers))])
    customers["is_outlier"] = False
    customers.loc[customers.index[:2], "is_outlier"] = True
    return customers


def segment_features(customers: pd.DataFrame, dataset: Dataset, features: list[str], run_id: int) -> pd.DataFrame:
    """What the publishing code writes: one row per segment x feature (x category)."""
    rows = []
    for segment_id, members in customers.groupby("segment_id"):
        position = 0
        for column in dataset.columns:
            if column.is_numeric:
                items = [(None, members[column.name].astype(float), customers[column.name].astype(float))]
            elif column.type == "boolean":
                items = [("true", (members[column.name] == True).astype(float),  # noqa: E712
                          (customers[column.name] == True).astype(float))]  # noqa: E712
            else:
                items = [(value, (members[column.name] == value).astype(float),
                          (customers[column.name] == value).astype(float)) for value in column.values]
            for category, own, overall in items:
                position += 1
                z = (own.mean() - overall.mean()) / overall.std()
                rows.append({
                    "run_id": run_id, "segment_id": int(segment_id), "position": position,
                    "feature": column.name, "category": category, "label": column.label, "unit": column.unit,
                    "is_clustering_feature": column.name in features, "mean": own.mean(),
                    "median": own.median() if category is None else None,
                    "index_value": own.mean() / overall.mean() * 100, "z_score": z,
                    "level": "high" if z > 0.5 else "low" if z < -0.5 else "average",
                })
    return pd.DataFrame(rows)


def make_data(dataset: Dataset, features: list[str], customers: pd.DataFrame, *, describe: bool = True,
              previous_run_id: int | None = 6, sample: pd.DataFrame | None = None) -> report_data.ReportData:
    run_id = 7
    counts = customers.groupby("segment_id").size()
    profiles = pd.DataFrame({
        "run_id": run_id,
        "segment_id": counts.index.astype(int),
        "segment_name": [f"Group {index}" for index in range(1, len(counts) + 1)],
        "customer_count": counts.to_numpy(),
        "customer_share": counts.to_numpy() / counts.sum(),
        "recommendation": [f"Recommendation {index}." for index in range(1, len(counts) + 1)],
        "distinguishing_features": [f"Distinct {index}" for index in range(1, len(counts) + 1)],
        "centroid": [{} for _ in counts],
        "centroid_shift": 0.05,
        "previous_customer_count": counts.to_numpy() - 3,
    })
    ks = list(range(2, 7))
    evaluations = pd.DataFrame({
        "run_id": run_id, "k": ks, "inertia": [900.0, 500, 300, 260, 240],
        "silhouette": [0.40, 0.50, 0.45, 0.42, 0.41], "davies_bouldin": [0.9, 0.7, 0.8, 0.85, 0.9],
        "calinski_harabasz": [300.0, 420, 380, 360, 340], "gap": [0.3, 0.5, 0.55, 0.56, 0.57],
        "gap_sd": 0.02, "stability_ari": [0.9, 0.95, 0.8, 0.7, 0.6], "votes": [0, 3, 1, 1, 0],
        "is_elbow": [False, True, False, False, False], "is_chosen": [False, True, False, False, False],
    })
    run = types.SimpleNamespace(
        run_id=run_id, status="published", error=None, published_at="2024-05-01 02:00:00+00",
        n_customers=len(customers), features=features, scaling="standard", k=len(counts), k_selection="automatic",
        silhouette=0.5, n_imputed={features[0]: 2}, n_outliers=2, random_state=42, size_psi=0.02,
        max_centroid_shift=0.05, rationale="k chosen by 3 of 5 criteria.", source_name="export.csv",
        reject_share=0.01, dataset=dataset.describe() if describe else None,
    )
    ids = sorted(counts.index.astype(int))
    transitions = pd.DataFrame({
        "from_segment_id": [ids[0], ids[-1], None], "to_segment_id": [ids[0], ids[0], ids[-1]],
        "customer_count": [50, 3, 2],
    })
    return report_data.ReportData(
        run=run, evaluations=evaluations, profiles=profiles,
        customers=customers if sample is None else sample, previous_run_id=previous_run_id,
        transitions=transitions, segment_features=segment_features(customers, dataset, features, run_id),
    )


# --- the tests --------------------------------------------------------------------------------


def test_mall_report_names_its_features_and_describes_every_image():
    customers = mall_customers(np.random.default_rng(1), [0, 1, 2])
    data = make_data(MALL, ["annual_income_k", "spending_score"], customers, describe=False)
    assert data.dataset is MALL  # runs from before declarations: the mall
    page = render_report(data)
    for label in ("annual income (k$)", "spending score (1-100)", "age (years)", "gender"):
        assert label in page
    assert "CustomerID" in page
    alts = images(page)
    # histograms, category shares, pairs, k choice, segment scatter, profile indexes
    assert len(alts) == 6 and all(alt.strip() for alt in alts)
    assert "Average annual income (k$)" in page and "gender: shares" in page
    assert "Female" in page and "%" in page
    assert "Compared with run 6" in page and "Customers moved between segments" in page


def test_bank_report_never_mentions_the_mall():
    customers = bank_customers(np.random.default_rng(2), [1, 4, 9])
    data = make_data(BANK, ["income", "balance", "tenure", "student", "region"], customers)
    assert data.dataset.names == BANK.names  # read from the run's stored declaration
    page = render_report(data)
    for label in ("income ($)", "balance ($)", "tenure (years)", "student", "region", "account_no"):
        assert label in page
    lowered = page.lower()
    for mall_word in ("spending score", "spending", "annual_income_k", "k$", "gender", "female", "customerid",
                      "age (years)"):
        assert mall_word not in lowered
    alts = images(page)
    assert len(alts) == 6 and all(alt.strip() for alt in alts)
    histograms = next(alt for alt in alts if alt.startswith("Histograms"))
    assert "income ($) (log scale" in histograms and "balance ($) (log scale" in histograms
    assert "tenure (years)" in histograms and "tenure (years) (log" not in histograms
    assert "zero values not shown" in histograms
    shares = next(alt for alt in alts if alt.startswith("Bar charts of the share"))
    assert "student: yes" in shares and "region: North" in shares
    assert "student: share yes" in page and "region: shares" in page


def test_the_segment_scatter_uses_the_two_features_that_separate_segments_most():
    customers = bank_customers(np.random.default_rng(3), [1, 4, 9])
    data = make_data(BANK, ["tenure", "income", "balance"], customers)  # tenure: no difference between segments
    alts = images(render_report(data))
    scatter = next(alt for alt in alts if alt.startswith("Scatter plot of"))
    assert "income ($)" in scatter and "balance ($)" in scatter and "tenure" not in scatter
    pairs = next(alt for alt in alts if alt.startswith("Scatter plots of"))
    assert pairs.count(" against ") == 3


@pytest.mark.parametrize("features", [["income"], ["income", "student", "region"]])
def test_a_single_numeric_feature_shows_segment_sizes_instead_of_a_scatter(features):
    customers = bank_customers(np.random.default_rng(4), [0, 1])
    page = render_report(make_data(BANK, features, customers))
    alts = images(page)
    # histograms, category shares, k choice, segment sizes, profile indexes
    assert len(alts) == 5 and all(alt.strip() for alt in alts)
    assert any(alt.startswith("Bar chart of segment sizes") for alt in alts)
    assert not any(alt.startswith("Scatter") for alt in alts)
    indexes = next(alt for alt in alts if alt.startswith("Bar charts of profile indexes"))
    assert "income ($)" in indexes
    if "region" in features:
        assert "region: " in indexes and "student: yes" in indexes
    assert "Pairwise scatters need two numeric clustering features" in page


def test_a_pruned_run_renders_with_a_note():
    customers = mall_customers(np.random.default_rng(5), [0, 1, 2])
    empty = customers.iloc[0:0]
    page = render_report(make_data(MALL, ["annual_income_k", "spending_score"], customers, sample=empty,
                                   previous_run_id=None))
    assert "customer sample was pruned" in page
    alts = images(page)
    assert len(alts) == 3 and all(alt.strip() for alt in alts)  # k choice, centres, indexes
    assert "first published run" in page


def test_one_colour_mapping_per_report(monkeypatch):
    built = []
    original = report._colours

    def counting(segment_ids):
        built.append(sorted(int(segment_id) for segment_id in segment_ids))
        return original(segment_ids)

    monkeypatch.setattr(report, "_colours", counting)
    customers = bank_customers(np.random.default_rng(6), [9, 1, 4])
    render_report(make_data(BANK, ["income", "balance"], customers))
    assert built == [[1, 4, 9]]
    colours = original([9, 1, 4])
    assert list(colours) == [1, 4, 9] and len(set(colours.values())) == 3
    # the palette of the views' segment_color: a segment keeps its colour whatever the other ids
    assert colours == {segment_id: segment_color(segment_id) for segment_id in (1, 4, 9)}
    assert original([4, 9])[9] == colours[9]


def test_the_choice_of_k_is_explained_in_words_with_human_column_titles():
    customers = mall_customers(np.random.default_rng(8), [1, 2, 3])
    page = render_report(make_data(MALL, ["annual_income_k", "spending_score"], customers))
    headers = re.findall(r"<th>([^<]*)</th>", page)
    for raw in ("davies_bouldin", "calinski_harabasz", "is_chosen", "stability_ari", "gap_sd"):
        assert raw not in headers
    for title in ("Segments (k)", "Silhouette", "Davies-Bouldin", "Chosen", "Stability (mean ARI)"):
        assert title in headers
    assert "False" not in page and "True" not in page and "✓ chosen" in page
    assert "customers clearly belong to their segment" in page  # the silhouette, for a marketer
    assert "0.500: customers clearly belong" in page  # the run's own score in words
    for criterion in ("Silhouette (from -1 to 1, higher is better)", "Davies-Bouldin (lower is better)",
                      "Stability (from 0 to 1)"):
        assert html.escape(criterion) in page
    assert "150 means 50% above average" in page and "segment size stability (PSI) 0.020" in page


def test_shares_are_rounded_as_the_command_line_and_the_views_print_them():
    customers = mall_customers(np.random.default_rng(12), [1, 2])
    data = make_data(MALL, ["annual_income_k", "spending_score"], customers)
    data.profiles["customer_share"] = [0.4115, 0.5885]  # 41.15 in float8 is 41.149999...: the views say 41.2
    cells = re.findall(r"<td>([^<]*)</td>", render_report(data))
    assert "41.2%" in cells and "58.9%" in cells


def test_customer_moves_are_counted_with_the_share_of_their_row():
    customers = mall_customers(np.random.default_rng(9), [1, 2, 3])
    page = render_report(make_data(MALL, ["annual_income_k", "spending_score"], customers))
    assert "Customers moved between segments" in page
    cells = re.findall(r"<td>([^<]*)</td>", page)
    assert "50 (100%)" in cells and "2 (100%)" in cells  # was 1 -> now 1; new customers -> now 3
    assert "new customers" in cells


def test_renumbered_segments_are_not_presented_as_moves_and_psi_says_why_it_is_blank():
    customers = mall_customers(np.random.default_rng(10), [1, 2, 3])
    data = make_data(MALL, ["annual_income_k", "spending_score"], customers)
    data.run.size_psi = data.run.max_centroid_shift = None
    data = dataclasses.replace(data, previous_comparable=False, previous_features=("age", "spending_score"))
    page = render_report(data)
    assert "Customers moved between segments" not in page
    assert "numbered afresh" in page and "Run 6 segmented on age, spending_score" in page
    assert "How run 6's segments map onto the new ones" in page
    assert "(PSI) and centre shifts are blank: no earlier published run segmented on the same features" in page
    compared = dataclasses.replace(data, comparable_run_id=4)
    compared.run.size_psi = 0.04
    page = render_report(compared)
    assert "compared with run 4, the latest published run on the same features: PSI 0.040" in page


def test_a_first_run_says_why_psi_is_blank():
    customers = mall_customers(np.random.default_rng(11), [1, 2])
    page = render_report(make_data(MALL, ["annual_income_k", "spending_score"], customers, previous_run_id=None))
    assert "first published run" in page and "stability (PSI) and the centre shifts are blank" in page
    assert "Customers moved" not in page


def test_labels_are_escaped_and_dollars_are_not_math():
    odd = Dataset(
        id_column="id", id_type="text",
        columns=(
            Column("a", "A", "number", "cost <b>", unit="$"),
            Column("b", "B", "number", "price & fee", unit="$"),
        ),
    )
    rng = np.random.default_rng(7)
    customers = _finish(pd.DataFrame({"segment_id": [0] * 30 + [1] * 30,
                                      "a": rng.normal(10, 1, 60), "b": rng.normal(5, 1, 60)}))
    page = render_report(make_data(odd, ["a", "b"], customers))
    assert "cost &lt;b&gt; ($)" in page and "<b>" not in page
    assert "price &amp; fee ($)" in page
    assert len(images(page)) == 5  # no category columns: no share chart


def test_customers_from_attributes_types_values_by_declaration():
    raw = pd.DataFrame({
        "customer_id": ["x1", "x2", "x3"], "segment_id": [0, 1, 1], "is_outlier": [False, True, None],
        "a1": ["1200.5", None, "oops"], "a2": ["0", "3", "12"], "a3": ["true", "false", None],
        "a4": ["North", None, "West"],
    })
    bank = Dataset(id_column="id", id_type="text", columns=(BANK.columns[0], BANK.columns[2], BANK.columns[3],
                                                              BANK.columns[4], BANK.columns[1]))
    customers = report_data.customers_from_attributes(raw, bank)
    assert list(customers.columns) == ["customer_id", "segment_id", "is_outlier", "income", "tenure", "student",
                                       "region", "balance"]
    assert customers["income"].tolist()[0] == 1200.5 and customers["income"].isna().tolist()[1:] == [True, True]
    assert customers["tenure"].tolist() == [0.0, 3.0, 12.0]
    assert customers["student"].tolist() == [True, False, None]
    assert customers["region"].tolist() == ["North", None, "West"]
    assert customers["balance"].isna().all()  # beyond the stored attributes: unknown
    assert customers["is_outlier"].tolist() == [False, True, False]


def render_report(data: report_data.ReportData) -> str:
    page = report.render_report(data)
    assert page.startswith("<!doctype html>") and "http" not in page.split("<body>")[1]
    return page


def test_the_profile_table_shows_averages_that_differ_when_they_differ():
    from segmentation.report.data import _Feature
    from segmentation.report.sections import profile_table

    profiles = pd.DataFrame({"segment_id": [1, 2], "segment_name": ["A", "B"], "customer_count": [5, 5],
                             "customer_share": [0.5, 0.5]})
    features = pd.DataFrame({"segment_id": [1, 2], "feature": ["score", "score"], "category": [None, None],
                             "mean": [60.51, 60.54], "position": [1, 1]})
    data = types.SimpleNamespace(profiles=profiles, segment_features=features)
    table = profile_table(data, [_Feature("score", "score", "numeric")])
    assert table["Average score"].tolist() == ["60.51", "60.54"]  # one decimal would show 60.5 twice


# --- a report for marketers first (issue 23) ----------------------------------------------------


def sections_in_order(page: str) -> list[str]:
    return re.findall(r"<section id='([^']+)'>", page)


def test_the_segments_come_before_how_they_were_made():
    customers = mall_customers(np.random.default_rng(13), [1, 2, 3])
    data = make_data(MALL, ["annual_income_k", "spending_score"], customers)
    page = render_report(data)
    assert sections_in_order(page) == ["the-segments", "segment-averages", "what-changed-since-the-last-run",
                                       "about-this-run", "the-data", "choosing-the-number-of-segments", "glossary"]
    body = page.split("<body>")[1]
    # every segment's name, size, what sets it apart and advice precede the method's first word
    method = min(body.index(word) for word in ("Scaling", "Seed (random_state)", "Davies-Bouldin", "ARI"))
    for position in range(1, 4):
        for text in (f"Group {position}", f"Distinct {position}", f"Recommendation {position}."):
            assert body.index(text) < method, text
    assert body.index("Customers segmented") < body.index("<section")  # the run at a glance, first


def test_the_forced_reason_and_the_reference_date_stay_at_the_top():
    customers = mall_customers(np.random.default_rng(14), [1, 2])
    data = make_data(MALL, ["annual_income_k", "spending_score"], customers)
    data.run.forced_reason = "no clear structure: silhouette gain 0.031 < 0.05"
    data.run.as_of = "2024-03-16"
    body = render_report(data).split("<body>")[1]
    first_section = body.index("<section")
    assert "Published despite the health gate (--force-publish)</th><td>no clear structure" in body
    assert "Reference date (as_of): orders before it count</th><td>2024-03-16" in body
    assert body.index("no clear structure") < first_section and body.index("2024-03-16") < first_section
    assert "class='warning'" in body[:first_section]


def test_a_fixed_k_draws_no_one_point_charts_and_says_so():
    customers = mall_customers(np.random.default_rng(15), [1, 2, 3])
    data = make_data(MALL, ["annual_income_k", "spending_score"], customers)
    data.run.k_selection = "fixed"
    data = dataclasses.replace(data, evaluations=data.evaluations[data.evaluations["k"] == 3].reset_index(drop=True))
    page = render_report(data)
    alts = images(page)
    assert not any("model-selection criteria" in alt for alt in alts)
    # histograms, category shares, pairs, segment scatter, profile indexes: no k chart
    assert len(alts) == 5
    choice = page.split("id='choosing-the-number-of-segments'")[1].split("</section>")[0]
    assert "fixed at 3 (segment run --k 3, or the k setting)" in choice and "no curves to show" in choice
    assert "Other criteria preferring it" not in choice and "Silhouette" in choice
    assert "3 (fixed with --k: not chosen by the job)" in page
    data.run.k_selection = "kept"  # a model kept from a run that stored no candidates
    kept = render_report(data)
    assert not any("model-selection criteria" in alt for alt in images(kept))
    assert "was kept from an earlier run" in kept and "fixed with --k" not in kept
    # a k chosen among candidates keeps its curves
    assert sum("model-selection criteria" in alt for alt in images(render_report(make_data(
        MALL, ["annual_income_k", "spending_score"], customers)))) == 1


LONG_APART = ("spending score 66% below average (17.1 vs 50.2); annual income 46% above average (88.2 vs 60.6); "
              "mostly male (54.3% vs 44.0%)")


def test_ten_segments_keep_every_word_of_what_sets_them_apart():
    ids = list(range(1, 11))
    customers = mall_customers(np.random.default_rng(16), ids, per_segment=20)
    data = make_data(MALL, ["annual_income_k", "spending_score", "gender"], customers)
    data.profiles["distinguishing_features"] = [f"{LONG_APART} [{index}]" for index in ids]
    data.profiles["recommendation"] = [f"Premium offers: VIP and loyalty programme, early access [{index}]."
                                       for index in ids]
    page = render_report(data)
    cards = re.findall(r"<article class='segment' id='segment-(\d+)'[^>]*>(.*?)</article>", page, re.S)
    assert [int(segment_id) for segment_id, _ in cards] == ids
    for (segment_id, card), name in zip(cards, data.profiles["segment_name"]):
        assert html.escape(f"{LONG_APART} [{segment_id}]") in card  # whole, in its own paragraph
        assert f"early access [{segment_id}]." in card and html.escape(name) in card
    # the averages table holds figures only: no sentences squeezed into narrow columns
    averages = page.split("id='segment-averages'")[1].split("</section>")[0]
    headers = re.findall(r"<th>([^<]*)</th>", averages)
    assert headers == ["Segment", "Name", "Customers", "Share of customers", "gender: shares", "Average age (years)",
                       "Average annual income (k$)", "Average spending score (1-100)"]
    assert LONG_APART not in averages
    indexes = next(alt for alt in images(page) if alt.startswith("Bar charts of profile indexes"))
    assert all(f"segment {segment_id} (Group {segment_id})" in indexes for segment_id in ids)


def test_an_extreme_index_is_cut_at_the_axis_edge_with_its_true_figure(monkeypatch):
    from segmentation.report import plots

    customers = mall_customers(np.random.default_rng(17), [1, 2, 3])
    data = make_data(MALL, ["annual_income_k", "spending_score"], customers)
    features = data.segment_features
    extreme = (features["segment_id"] == 3) & (features["feature"] == "annual_income_k")
    features.loc[extreme, "index_value"] = 976.0
    drawn = []
    original = plots._png
    monkeypatch.setattr(plots, "_png", lambda figure, alt: drawn.append((figure, alt)) or original(figure, alt))
    render_report(data)
    figure, alt = next((figure, alt) for figure, alt in drawn if alt.startswith("Bar charts of profile indexes"))
    assert "annual income (k$) 976" in alt and "cut and hatched" in alt
    for axis in figure.axes:
        left, right = axis.get_xlim()
        assert right < 400  # the other bars keep a readable scale
        texts = [text.get_text() for text in axis.texts]
        for patch in axis.patches:
            if patch.get_hatch():  # a cut bar ends at the limit and says its true figure
                assert patch.get_width() == plots.INDEX_AXIS_LIMIT and "976 ▸ cut" in texts
            else:  # every other bar is as long as its index
                assert patch.get_width() <= plots.INDEX_AXIS_LIMIT
    assert sum(bool(patch.get_hatch()) for axis in figure.axes for patch in axis.patches) == 1
    assert plots.index_axis_limit([976.0, 45.0, 120.0]) == plots.INDEX_AXIS_LIMIT
    assert plots.index_axis_limit([150.0, 80.0, None]) == 150.0 and plots.index_axis_limit([40.0]) == 100.0


def test_index_figures_and_the_run_figures_follow_the_display_rule():
    from segmentation.report import plots, sections

    # three significant digits (display.decimals), thousands separators
    assert [plots.index_figure(value) for value in (976.4, 1620.2, 45.34, 8.123, 100.0)] == \
        ["976", "1,620", "45.3", "8.12", "100"]
    assert sections._cell(0.0694) == "0.0694" and sections._cell(12345.678) == "12,345.7"
    assert sections._cell(1234567) == "1,234,567"
    assert sections._column_figures(pd.Series([269.7, 157.71, 65.6])) == ["269.7", "157.7", "65.6"]
    # axis ticks: separators from a thousand up, the tick's own digits below
    assert [plots._tick(value) for value in (12000.0, 2500000.0, 1000.5, 0.30000000000000004, 40.0)] == \
        ["12,000", "2,500,000", "1,000.5", "0.3", "40"]


def test_counts_carry_thousands_separators():
    customers = mall_customers(np.random.default_rng(18), [1, 2])
    data = make_data(MALL, ["annual_income_k", "spending_score"], customers)
    data.profiles["customer_count"] = [12_345, 1_002]
    data.profiles["previous_customer_count"] = [11_999, 1_500]
    data.run.n_customers = 1_234_567
    data.run.n_outliers = 4_321
    data.transitions["customer_count"] = [1_500, 3, 2_000]
    page = render_report(data)
    cells = re.findall(r"<td>([^<]*)</td>", page)
    for shown in ("12,345", "1,002", "11,999", "1,500", "1,234,567", "4,321", "1,500 (100%)", "2,000 (100%)"):
        assert shown in cells, shown
    assert "<strong>12,345</strong> customers" in page
    assert not re.search(r"<td>\d{4,}</td>", page)  # no count of four digits or more without a separator


def test_a_held_run_says_so_at_the_top_and_shows_no_empty_table_of_moves():
    customers = mall_customers(np.random.default_rng(19), [1, 2])
    data = make_data(MALL, ["annual_income_k", "spending_score"], customers)
    data.run.status, data.run.published_at = "held", None
    data.run.error = "segment sizes drifted: PSI 3.435 is above max_size_psi 0.25"
    data = dataclasses.replace(data, transitions=data.transitions.iloc[0:0])
    body = render_report(data).split("<body>")[1]
    top = body[:body.index("<section")]
    assert "This run was not published (status held)" in top and "PSI 3.435" in top
    changes = body.split("id='what-changed-since-the-last-run'")[1].split("</section>")[0]
    assert "No moves to show" in changes and "<table><thead><tr><th></th></tr>" not in changes
