"""Order files without a database: dates, header roles, the [orders] table and the RFM names rule."""

import datetime
import re

import pytest

from segmentation.ingest.dates import PLAIN_DATE, parse_order_date
from segmentation.ingest.rules import RowRejected
from segmentation.orders import OrdersSpec, locate, parse_orders
from segmentation.orders.names import RECOMMENDATIONS, RULES, kind, unique_names
from segmentation.settings import Settings


@pytest.mark.parametrize(("text", "date_format", "stored"), [
    ("2024-03-01", None, "2024-03-01 00:00:00"),
    ("20240301", None, "2024-03-01 00:00:00"),
    ("2024-03-01 14:05", None, "2024-03-01 14:05:00"),
    ("2024-03-01T14:05:00+01:00", None, "2024-03-01 14:05:00"),
    ("03/01/2024 14:05", "%m/%d/%Y %H:%M", "2024-03-01 14:05:00"),
    ("1.3.2024", "%d.%m.%Y", "2024-03-01 00:00:00"),
])
def test_order_dates_are_stored_in_one_form(text, date_format, stored):
    assert parse_order_date(text, date_format) == stored


@pytest.mark.parametrize(("text", "date_format", "reason"), [
    ("2023-02-29", None, "is not a date"),
    ("31/12/2024", None, "set date_format"),
    ("2024-03-01", "%d.%m.%Y", "is not a date in the format '%d.%m.%Y'"),
    ("0001-01-01", None, "outside the years 1900..2999"),
    ("", None, "date is empty"),
])
def test_bad_order_dates_are_rejected_with_a_reason(text, date_format, reason):
    with pytest.raises(RowRejected, match=re.escape(reason)):
        parse_order_date(text, date_format)


def test_the_fast_path_date_pattern_accepts_exactly_the_valid_dates():
    pattern = re.compile(PLAIN_DATE)
    day = datetime.date(1899, 12, 1)
    while day < datetime.date(2101, 3, 1):  # every day, leap years 1900 (no), 2000 (yes), 2100 (no)
        iso, basic = day.isoformat(), day.strftime("%Y%m%d")
        expected = day.year >= 1900
        assert bool(pattern.fullmatch(iso)) is expected, iso
        assert bool(pattern.fullmatch(basic)) is expected, basic
        day += datetime.timedelta(days=1)
    for invalid in ("1900-02-29", "2023-02-29", "2100-02-29", "2024-04-31", "2024-13-01", "20230229", "2024-00-10"):
        assert not pattern.fullmatch(invalid), invalid
        with pytest.raises(RowRejected):
            parse_order_date(invalid)


def test_common_header_spellings_are_recognised_without_configuration():
    layout = locate(["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"], OrdersSpec())
    assert layout.positions == {"customer_id": 5, "date": 3, "amount": None, "quantity": 2, "unit_price": 4,
                                "order_id": 0}
    layout = locate(["customer_id", "order_date", "revenue"], OrdersSpec())
    assert layout.positions["amount"] == 2 and layout.positions["order_id"] is None


def test_configured_headers_win_and_missing_ones_are_named():
    spec = parse_orders({"customer_id": "Customer", "date": "Purchase day", "amount": "Total ($)"})
    layout = locate(["Purchase day", "Customer", "Total ($)", "Amount"], spec)
    assert (layout.positions["customer_id"], layout.positions["date"], layout.positions["amount"]) == (1, 0, 2)
    with pytest.raises(ValueError, match=r"no column for date, amount \(or quantity and unit_price\)"):
        locate(["CustomerID", "Note"], OrdersSpec())


def test_a_configured_header_spelled_exactly_wins_over_one_that_only_normalises_alike():
    header = ["_id", "id", "date", "spent"]  # pymc-marketing's CDNOW sample: a row number, then the customer
    assert locate(header, parse_orders({"customer_id": "id", "amount": "spent"})).positions["customer_id"] == 1
    assert locate(header, parse_orders({"customer_id": "_id", "amount": "spent"})).positions["customer_id"] == 0


def test_orders_table_rejects_half_a_product_and_unknown_keys():
    with pytest.raises(ValueError, match="quantity and unit_price go together"):
        parse_orders({"quantity": "Qty"})
    with pytest.raises(ValueError, match="unknown key 'amout'"):
        parse_orders({"amout": "Total"})


def test_orders_make_recency_frequency_and_monetary_the_default_features():
    settings = Settings(orders={})
    assert settings.features == ["recency_days", "frequency", "monetary"]
    assert settings.declaration.column("frequency").transform == "log"
    assert settings.declaration.column("monetary").transform == "log"
    combined = Settings(orders={}, dataset={"id_column": "ID", "columns": {"income": {"type": "number"}}})
    assert combined.features == ["income", "recency_days", "frequency", "monetary"]
    assert combined.for_customer_import().declaration.names == ["income"]


@pytest.mark.parametrize(("levels", "name"), [
    ({"recency_days": "low", "frequency": "high", "monetary": "high"}, "Champions"),
    ({"recency_days": "high", "frequency": "high", "monetary": "average"}, "At risk"),
    ({"recency_days": "high", "frequency": "low", "monetary": "low"}, "Lost"),
    ({"recency_days": "low", "frequency": "low", "monetary": "average"}, "New customers"),
    ({"recency_days": "average", "frequency": "low", "monetary": "high"}, "Big spenders"),
    ({"recency_days": "high", "frequency": "high", "monetary": "high"}, "Can't lose them"),
    ({"r_score": "high", "f_score": "high", "m_score": "high"}, "Champions"),
    ({"frequency": "high", "monetary": "high"}, None),
])
def test_segments_are_named_in_the_marketers_words_from_their_levels(levels, name):
    assert kind(levels) == name


def test_every_combination_of_levels_gets_a_name_with_advice():
    for recency in ("low", "average", "high"):
        for frequency in ("low", "average", "high"):
            for monetary in ("low", "average", "high"):
                name = kind({"recency_days": recency, "frequency": frequency, "monetary": monetary})
                assert name in RECOMMENDATIONS
    assert {rule[3] for rule in RULES} == set(RECOMMENDATIONS)


def test_two_segments_of_one_kind_are_told_apart():
    names = unique_names(["Lost", "Champions", "Lost"], ["Lapsed, few orders, low value", "X", "Very lapsed, few orders"])
    assert names == ["Lost (lapsed, few orders, low value)", "Champions", "Lost (very lapsed, few orders)"]
    assert len(set(names)) == 3
