"""The data-set declaration: parsed from TOML, refused with clear messages, read by every stage."""

import numpy as np
import pandas as pd
import pytest

from segmentation import features, profiling
from segmentation.dataset import MALL, parse_dataset, parse_rules
from segmentation.errors import ConfigurationError
from segmentation.settings import load_settings

BANK = {
    "id_column": "ID",
    "id_type": "text",
    "columns": {
        "income": {"from": "Income", "type": "number", "unit": "k$", "min": 0},
        "balance": {"from": "Balance", "type": "number", "unit": "$", "min": 0, "transform": "log"},
        "student": {"from": "Student", "type": "boolean"},
        "region": {"from": "Region", "type": "category", "values": ["East", "West", "South"]},
    },
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "SEGMENT_CONFIG", "SEGMENT_FEATURES", "SEGMENT_DATASET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_no_declaration_means_the_mall_and_its_two_default_features():
    settings = load_settings()
    assert settings.declaration is MALL
    assert settings.features == ["annual_income_k", "spending_score"]
    assert MALL.names == ["gender", "age", "annual_income_k", "spending_score"]


def test_a_declared_export_from_toml_with_features_and_rules(tmp_path):
    (tmp_path / "segment.toml").write_text(
        'features = ["income", "balance", "student"]\n'
        '[dataset]\nid_column = "ID"\nid_type = "text"\n'
        '[dataset.columns.income]\nfrom = "Income"\ntype = "number"\nunit = "k$"\nmin = 0\n'
        '[dataset.columns.balance]\nfrom = "Balance"\ntype = "number"\nmin = 0\ntransform = "log"\n'
        '[dataset.columns.student]\nfrom = "Student"\ntype = "boolean"\n'
        '[[recommendations]]\nwhen = { balance = "high", income = "low" }\ntext = "Credit counselling."\n'
    )
    settings = load_settings()
    assert settings.declaration.id_type == "text"
    assert settings.declaration.column("balance").transform == "log"
    assert settings.features == ["income", "balance", "student"]
    assert settings.rules[0].text == "Credit counselling."


def test_without_features_every_declared_column_is_used():
    assert load_settings(dataset=BANK).features == ["income", "balance", "student", "region"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"columns": {"x": {"type": "money"}}}, "dataset.columns.x.type: 'money' is not one of number"),
        ({"columns": {"a": {"from": "Income", "type": "number"}, "b": {"from": "income ", "type": "number"}}},
         "header 'income' is already read by dataset.columns.a"),
        ({"columns": {"Bad Name": {"type": "number"}}}, "must be an SQL identifier"),
        ({"columns": {"x": {"type": "category", "min": 1}}}, "only number and whole columns have a range"),
        ({"columns": {"x": {"type": "number", "transform": "log"}}}, "log needs min = 0"),
        ({"id_type": "uuid"}, "'uuid' is not whole or text"),
        ({"columns": {"segment_id": {"type": "number"}}}, "a name the views use themselves"),
    ],
)
def test_bad_declarations_are_refused_with_the_key_named(change, message):
    declaration = {**BANK, **change}
    with pytest.raises(ConfigurationError, match="invalid settings") as raised:
        load_settings(dataset=declaration)
    assert message in str(raised.value)


def test_features_must_name_declared_columns():
    with pytest.raises(ConfigurationError, match="'age' is not a declared column; declared: income, balance"):
        load_settings(dataset=BANK, features="income,age")


def test_a_rule_about_an_undeclared_feature_is_refused():
    with pytest.raises(ConfigurationError, match="'debt' is not a declared column"):
        load_settings(dataset=BANK, recommendations=[{"when": {"debt": "high"}, "text": "x"}])


def test_column_map_to_something_not_declared_is_a_settings_error():
    with pytest.raises(ConfigurationError, match="neither customer_id nor a declared column"):
        load_settings(column_map={"Revenue": "revenue"})


def _bank_frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer_id": [f"C-{i:05d}" for i in range(n)],
        "income": [str(round(v, 2)) for v in rng.normal(50, 10, n)],
        "balance": [str(round(v, 2)) for v in rng.lognormal(5, 1, n)],
        "student": rng.choice(["true", "false"], n).tolist(),
        "region": rng.choice(["East", "West", "South", None], n).tolist(),
    })


def test_each_categorical_feature_weighs_as_much_as_one_numeric_feature():
    dataset = parse_dataset(BANK)
    encoded = features.encode(_bank_frame(), dataset, ["income", "balance", "student", "region"], "standard")
    variances = pd.Series(encoded.matrix.var(axis=0), index=encoded.columns)
    assert variances["income"] == pytest.approx(1.0)
    assert variances["student"] == pytest.approx(1.0)
    region = variances[[column for column in encoded.columns if column.startswith("region=")]]
    assert len(region) == 4  # East, South, West and (missing)
    assert region.sum() == pytest.approx(1.0)


def test_log_transform_applies_before_scaling_and_profiles_stay_in_original_units():
    dataset = parse_dataset(BANK)
    frame = _bank_frame()
    encoded = features.encode(frame, dataset, ["balance"], "standard")
    assert encoded.unscaled["balance"].to_numpy() == pytest.approx(np.log1p(frame["balance"].astype(float)))
    segment_ids = np.where(frame["balance"].astype(float) > 150, 1, 2)
    _, long = profiling.profile_segments(frame, dataset, ["balance"], encoded.unscaled, segment_ids)
    balance = long[long["feature"] == "balance"].set_index("segment_id")
    assert balance.loc[1, "mean"] == pytest.approx(frame["balance"].astype(float)[segment_ids == 1].mean())
    assert balance.loc[1, "level"] == "high" and balance.loc[2, "level"] == "low"


def test_names_use_labels_and_levels_at_most_three_features_and_stay_unique():
    dataset = parse_dataset(BANK)
    frame = _bank_frame(400, seed=2)
    encoded = features.encode(frame, dataset, dataset.names, "standard")
    segment_ids = np.array([1, 2, 3, 4] * 100)
    profiles, _ = profiling.profile_segments(frame, dataset, dataset.names, encoded.unscaled, segment_ids)
    assert profiles["segment_name"].is_unique
    for name in profiles["segment_name"]:
        assert name.count(",") <= 2


def test_user_rules_first_match_wins_and_a_plain_sentence_otherwise():
    dataset = parse_dataset(BANK)
    rules = parse_rules([
        {"when": {"balance": "high", "income": "low"}, "text": "Credit counselling."},
        {"when": {"balance": "high"}, "text": "Offer a consolidation loan."},
    ])
    n = 300
    frame = pd.DataFrame({
        "customer_id": [str(i) for i in range(n)],
        "income": ["20"] * 100 + ["80"] * 100 + ["50"] * 100,
        "balance": ["2000"] * 100 + ["2000"] * 100 + ["10"] * 100,
        "student": ["false"] * n,
        "region": ["East"] * n,
    })
    segment_ids = np.array([1] * 100 + [2] * 100 + [3] * 100)
    encoded = features.encode(frame, dataset, ["income", "balance"], "standard")
    profiles, _ = profiling.profile_segments(frame, dataset, ["income", "balance"], encoded.unscaled, segment_ids, rules)
    advice = profiles.set_index("segment_id")["recommendation"]
    assert advice[1] == "Credit counselling."
    assert advice[2] == "Offer a consolidation loan."
    assert advice[3].startswith("They stand out by low balance: choose the products, channels and messages")
