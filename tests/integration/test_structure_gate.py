"""The health gate judges structure against the data's own reference: planted groups in mixed
data are published, noise is held with a plain-words reason; forcing and previewing are on record."""

import numpy as np
import pytest
import sqlalchemy as sa

from segmentation.errors import RunHeld
from segmentation.pipeline import run_once
from segmentation.report import write_report
from segmentation.report.data import load_report_data
from segmentation.settings import load_settings

SHOP = {
    "id_column": "id",
    "columns": {
        "spend": {"type": "number", "min": 0, "transform": "log", "better": "higher"},
        "visits": {"type": "number", "min": 0},
        "age": {"type": "number", "min": 0, "words": ["younger", "older"]},
        "channel": {"type": "category", "label": "channel"},
        "member": {"type": "boolean", "label": "members"},
    },
}


def settings(**overrides):
    return load_settings(database_url="postgresql://unused@localhost/unused", dataset=SHOP, write_report=False,
                         gap_references=6, stability_resamples=4, k_max=7, **overrides)


def query(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def write_shop(path, n=900, seed=3, planted=True):
    """Mixed customers: planted groups (numbers, a category and a boolean that follow the group,
    each with noise) or noise (every column drawn on its own, with the same kinds of values)."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, n)
    if planted:
        spend = np.exp(np.array([3.0, 5.0, 4.0])[group] + rng.normal(0, 0.5, n))
        visits = np.array([2.0, 8.0, 5.0])[group] + rng.normal(0, 1.5, n)
        age = np.array([25.0, 45.0, 65.0])[group] + rng.normal(0, 6, n)
        channel = np.where(rng.random(n) < 0.8, np.array(["web", "store", "phone"])[group], rng.choice(["web", "store", "phone"], n))
        member = (group == 1) ^ (rng.random(n) < 0.1)
    else:
        spend = np.exp(rng.normal(4.0, 1.0, n))
        visits = np.clip(rng.normal(5, 3, n), 0, None)
        age = rng.normal(45, 15, n).clip(18, None)
        channel = rng.choice(["web", "store", "phone"], n)
        member = rng.random(n) < 0.3
    lines = ["id,spend,visits,age,channel,member"] + [
        f"{number + 1},{spend[number]:.2f},{visits[number]:.2f},{age[number]:.1f},{channel[number]},{str(member[number]).lower()}"
        for number in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_clear_groups_in_mixed_data_are_found_and_published(engine, tmp_path):
    outcome = run_once(engine, settings(), write_shop(tmp_path / "planted.csv"))
    assert outcome.status == "published" and outcome.k == 3
    chosen = outcome.result.evaluations.set_index("k").loc[3]
    assert chosen["silhouette_gain"] > 0.1 and chosen["silhouette"] > chosen["reference_silhouette_max"]
    stored = query(engine, "select k, reference_silhouette, silhouette_gain from segmentation_internal.k_evaluations"
                           " where run_id = :r and is_chosen", r=outcome.run_id)
    assert stored[0].k == 3 and stored[0].silhouette_gain == pytest.approx(chosen["silhouette_gain"])
    # the three strongest differences of five features, each a majority where it says "mostly"
    assert set(outcome.profiles["segment_name"]) == {
        "High spend, channel: mostly store, mostly members", "Older, channel: mostly phone, few members",
        "Low spend, channel: mostly web, few members"}


def test_noise_is_held_with_a_reason_in_plain_words_and_a_way_to_explore(engine, tmp_path):
    with pytest.raises(RunHeld) as held:
        run_once(engine, settings(), write_shop(tmp_path / "noise.csv", planted=False))
    message = str(held.value)
    assert "no clear structure: the segments hold together hardly better than" in message
    assert "with each feature shuffled on its own" in message
    assert "--preview` and read its report" in message and "`segment run --k " in message
    assert query(engine, "select status from segmentation.run_history") == [("held",)]
    assert query(engine, "select count(*) from segmentation.current_segment_profiles") == [(0,)]


def test_a_preview_publishes_nothing_and_a_forced_publish_is_on_record(engine, tmp_path, data_dir):
    noise = write_shop(tmp_path / "noise.csv", planted=False)
    preview = run_once(engine, settings(k=4, preview=True), noise)
    assert preview.status == "preview"
    assert query(engine, "select status, error like 'preview (--preview): nothing published%' from segmentation.run_history") \
        == [("held", True)]
    assert query(engine, "select count(*) from segmentation.current_segment_profiles") == [(0,)]

    forced = run_once(engine, settings(k=4, force_publish=True), noise)
    rows = query(engine, "select run_id, status, forced_reason, error from segmentation.run_history order by run_id")
    assert rows[-1].run_id == forced.run_id and rows[-1].status == "published" and rows[-1].error is None
    assert rows[-1].forced_reason.startswith("no clear structure")
    assert rows[0].forced_reason is None
    path = tmp_path / "report.html"
    with engine.begin() as connection:
        write_report(connection, forced.run_id, path)
        assert load_report_data(connection, forced.run_id).run.forced_reason == rows[-1].forced_reason
    page = path.read_text()
    assert "Published despite the health gate (--force-publish)" in page and "no clear structure" in page
