"""The `[orders]` declaration: which headers of an order export hold what, and the RFM columns.

An order export has one line per order (or order line): a customer id, a date and either an
amount or a quantity and a unit price, optionally an order id. `[orders]` names those headers;
common spellings (CustomerID, InvoiceDate, Revenue, Quantity x UnitPrice, InvoiceNo, ...) are
recognised without it. Recency, frequency and monetary value are then declared columns of the
data set like any other (`RFM_COLUMNS`), computed by SQL (the `customer_rfm` view) instead of
imported, so features, profiles, names, the report and the views all read them from the one
declaration.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Any, Literal

from segmentation.dataset import Column, Dataset, control_character, normalise_header, unknown_key

#: header roles of an order export, in the order messages name them
ROLES = ("customer_id", "date", "amount", "quantity", "unit_price", "order_id")

#: spellings recognised without configuration (after `normalise_header`), most specific first
DEFAULT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "customer_id": ("customerid", "customer", "custid", "clientid", "customerno", "customernumber", "client",
                    "userid", "buyerid", "memberid"),
    "date": ("date", "orderdate", "invoicedate", "purchasedate", "transactiondate", "orderedat", "purchaseday",
             "orderday", "day", "createdat", "timestamp"),
    "amount": ("amount", "revenue", "sales", "total", "ordertotal", "totalamount", "ordervalue", "value",
               "netamount", "salesamount"),
    "quantity": ("quantity", "qty", "units", "numberofitems", "items"),
    "unit_price": ("unitprice", "price", "itemprice", "priceeach"),
    "order_id": ("orderid", "invoiceno", "invoice", "invoiceid", "orderno", "ordernumber", "transactionid",
                 "receiptid"),
}

_KEYS = {*ROLES, "date_format", "currency", "id_type"}

#: years an order date may have: outside them a date is a placeholder or a typo
FIRST_ORDER_YEAR, LAST_ORDER_YEAR = 1900, 2999


def latest_order_date(tolerance_days: int, today: datetime.date | None = None) -> datetime.date:
    """The last day an order line may be dated: `today` (default: today in UTC) plus `tolerance_days`.

    A later date is impossible (the export cannot hold tomorrow's orders, give or take time
    zones): one such line would move the default reference date and every recency with it.
    """
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    return today + datetime.timedelta(days=tolerance_days)
_STRFTIME = re.compile(r"%[YmdbBHMSyIpjf]")


@dataclasses.dataclass(frozen=True)
class OrdersSpec:
    """What `[orders]` says: a header per role (None: recognise the default spellings),
    `date_format` (strftime style; None: ISO 8601 or YYYYMMDD), the currency shown on
    monetary columns, and the id type when no `[dataset]` declares one."""

    customer_id: str | None = None
    date: str | None = None
    amount: str | None = None
    quantity: str | None = None
    unit_price: str | None = None
    order_id: str | None = None
    date_format: str | None = None
    currency: str | None = None  # unset: amounts carry no unit
    id_type: Literal["whole", "text"] = "whole"


@dataclasses.dataclass(frozen=True)
class OrdersLayout:
    """Where each role sits in one file's header (field index), None for an absent optional one."""

    positions: dict[str, int | None]
    headers: dict[str, str]

    @property
    def has_amount(self) -> bool:
        return self.positions.get("amount") is not None


def parse_orders(raw: dict[str, Any] | None) -> OrdersSpec:
    """The `[orders]` table as an OrdersSpec (ValueError naming the offending key)."""
    raw = raw or {}
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(unknown_key("orders", sorted(unknown)[0], _KEYS))
    for key, value in raw.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"orders.{key}: expected text, e.g. {key} = \"...\"")
        found = control_character(value)
        if found:
            raise ValueError(f"orders.{key}: contains the control character {found}; remove it")
    if ("quantity" in raw) != ("unit_price" in raw):
        raise ValueError("orders: quantity and unit_price go together (the amount is their product)")
    if "amount" in raw and "quantity" in raw:
        raise ValueError("orders: name either amount or quantity and unit_price, not both")
    date_format = raw.get("date_format")
    if date_format is not None and not _STRFTIME.search(date_format):
        raise ValueError(f"orders.date_format: {date_format!r} has no strftime field such as %d, %m or %Y")
    id_type = raw.get("id_type", "whole")
    if id_type not in ("whole", "text"):
        raise ValueError(f"orders.id_type: {id_type!r} is not whole or text")
    return OrdersSpec(**{key: value.strip() if key != "date_format" else value for key, value in raw.items()})


def locate(header: list[str], spec: OrdersSpec, source: str = "file") -> OrdersLayout:
    """Place each role in `header`: the configured header name, else a default spelling.

    Raises ValueError naming what is missing (customer id, date, and an amount or a quantity
    and a unit price) and what the header has.
    """
    keys = [normalise_header(name) for name in header]
    stripped = [name.strip() for name in header]
    positions: dict[str, int | None] = {}
    for role in ROLES:
        configured = getattr(spec, role)
        spellings = (normalise_header(configured),) if configured else DEFAULT_SPELLINGS[role]
        positions[role] = next((keys.index(spelling) for spelling in spellings if spelling in keys), None)
        if configured and configured.strip() in stripped:  # spelled exactly: "id" beside "_id"
            positions[role] = stripped.index(configured.strip())
    if spec.amount is None and spec.quantity is not None:
        positions["amount"] = None  # quantity x unit_price named: a column called "total" is not the amount
    if positions["amount"] is not None:
        positions["quantity"] = positions["unit_price"] = None
    missing = [role for role in ("customer_id", "date") if positions[role] is None]
    if positions["amount"] is None and (positions["quantity"] is None or positions["unit_price"] is None):
        missing.append("amount (or quantity and unit_price)")
    taken = [position for position in positions.values() if position is not None]
    if len(set(taken)) != len(taken):
        raise ValueError(f"{source} line 1: one column is read for two roles; name each in [orders]")
    if missing:
        shown = ", ".join(repr(name) for name in header[:20]) or "nothing"
        raise ValueError(
            f"{source} line 1: no column for {', '.join(missing)}; found {shown}."
            " Name the headers in segment.toml, e.g. [orders] customer_id = \"Customer\", date = \"Day\","
            " amount = \"Total\""
        )
    headers = {role: header[index] for role, index in positions.items() if index is not None}
    return OrdersLayout(positions=positions, headers=headers)


# --- RFM as declared columns ------------------------------------------------------------------

RFM_FEATURES = ("recency_days", "frequency", "monetary")


def rfm_columns(currency: str | None = None) -> tuple[Column, ...]:
    """The columns of `customer_rfm` a declaration gets with `[orders]` (names = the view's).

    Frequency and monetary value are log-transformed: a few customers with hundreds of orders
    otherwise make one-customer segments. Monetary value may be negative (returns), which the
    log transform treats as 0. Each says which way is good for the business (`better`), for
    the advice of segments that no RFM kind names.
    """
    return (
        Column("recency_days", "recency_days", "whole", "recency", unit="days", minimum=0,
               level_words=("recent", "average recency", "lapsed"), better="lower"),
        Column("frequency", "frequency", "whole", "frequency", unit="orders", minimum=0, transform="log",
               level_words=("few orders", "some orders", "many orders"), better="higher"),
        Column("monetary", "monetary", "number", "monetary value", unit=currency, transform="log",
               level_words=("low value", "average value", "high value"), better="higher"),
        Column("average_order_value", "average_order_value", "number", "average order value", unit=currency,
               level_words=("small baskets", "average baskets", "large baskets"), better="higher"),
        Column("tenure_days", "tenure_days", "whole", "tenure", unit="days", minimum=0,
               level_words=("new", "average tenure", "long-standing"), better="higher"),
        Column("r_score", "r_score", "whole", "recency score", unit="1-5", minimum=1, maximum=5, better="higher"),
        Column("f_score", "f_score", "whole", "frequency score", unit="1-5", minimum=1, maximum=5, better="higher"),
        Column("m_score", "m_score", "whole", "monetary score", unit="1-5", minimum=1, maximum=5, better="higher"),
    )


def with_rfm(base: Dataset | None, spec: OrdersSpec) -> Dataset:
    """The declaration of a run on orders: `base`'s columns (a customer export, or none) plus RFM.

    Default features: the base's (its defaults, else all its columns) and recency, frequency
    and monetary value. The RFM columns are `derived` (computed by SQL, never imported).
    """
    rfm = rfm_columns(spec.currency)
    if base is None:
        return Dataset(id_column=spec.customer_id or "customer_id", id_type=spec.id_type, columns=rfm,
                       default_features=RFM_FEATURES, derived=tuple(column.name for column in rfm))
    clash = sorted(set(base.names) & {column.name for column in rfm})
    if clash:
        raise ValueError(f"dataset.columns.{clash[0]}: {clash[0]!r} is computed from the orders; choose another name")
    return dataclasses.replace(
        base,
        columns=base.columns + rfm,
        default_features=(base.default_features or tuple(base.names)) + RFM_FEATURES,
        derived=tuple(column.name for column in rfm),
    )
