"""What the report shows about one run, read from the tables (`load_report_data`), and how it
names the run's features (`_Feature`). The sections and plots read this; nothing here draws.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segmentation.dataset import BOOLEAN_WORDS, MALL, Column, Dataset, from_description
from segmentation.errors import SegmentationError

SEGMENT_FEATURE_COLUMNS = ["run_id", "segment_id", "position", "feature", "category", "label", "unit",
                           "is_clustering_feature", "mean", "median", "index_value", "z_score", "level"]


@dataclasses.dataclass
class ReportData:
    """What the report shows about one run.

    `run` is the run's row of `segmentation_internal.runs` (anything with its columns as attributes);
    `customers` a seeded sample of its customer rows with customer_id, segment_id, is_outlier
    and one column per declared column (numbers as floats, booleans as True/False, categories
    as text; missing values NaN/None); `segment_features` the run's rows of
    `segmentation_internal.segment_features`. `dataset` None means: the run's stored declaration.
    """

    run: Any
    evaluations: pd.DataFrame
    profiles: pd.DataFrame
    customers: pd.DataFrame
    previous_run_id: int | None
    transitions: pd.DataFrame  # from_segment_id, to_segment_id, customer_count
    segment_features: pd.DataFrame
    dataset: Dataset | None = None
    # Did the previous published run segment on the same features and declaration? If not, this
    # run's ids were numbered afresh and `transitions` compares two segmentations, not moves.
    previous_comparable: bool = True
    previous_features: tuple[str, ...] = ()
    comparable_run_id: int | None = None  # the latest earlier published run on the same features

    def __post_init__(self) -> None:
        if self.dataset is None:
            self.dataset = from_description(getattr(self.run, "dataset", None))


def load_report_data(connection: Connection, run_id: int) -> ReportData:
    """Everything the report shows about `run_id`, read from the tables."""
    run = connection.execute(sa.text("select * from segmentation_internal.runs where run_id = :r"), {"r": run_id}).one_or_none()
    if run is None:
        raise SegmentationError(f"there is no run {run_id}; see `segment runs`")
    if run.k is None:
        raise SegmentationError(f"run {run_id} has no results (status {run.status}); nothing to report")
    dataset = from_description(run._mapping.get("dataset"))
    read = lambda sql, **params: pd.read_sql_query(sa.text(sql), connection, params={"r": run_id, **params})  # noqa: E731
    evaluations = read("select * from segmentation_internal.k_evaluations where run_id = :r order by k")
    profiles = read("select * from segmentation_internal.segment_profiles where run_id = :r order by segment_id")
    segment_features = read(
        "select * from segmentation_internal.segment_features where run_id = :r order by segment_id, position"
    )
    customers = customers_from_attributes(_customer_sample(connection, run, dataset), dataset)
    earlier = connection.execute(
        sa.text(
            "select run_id, features, features = :features"
            " and coalesce(dataset_fingerprint, :mall) = coalesce(:fingerprint, :mall) as comparable"
            " from segmentation_internal.runs where status = 'published' and run_id < :r"
            " and segmentation_id = :segmentation"
            " order by published_at desc, run_id desc"
        ),
        {"r": run_id, "features": list(run.features or []), "fingerprint": run._mapping.get("dataset_fingerprint"),
         "mall": MALL.fingerprint(), "segmentation": run.segmentation_id},
    ).all()
    previous_run_id = earlier[0].run_id if earlier else None
    comparable_run_id = next((row.run_id for row in earlier if row.comparable), None)
    transitions = pd.DataFrame(columns=["from_segment_id", "to_segment_id", "customer_count"])
    if previous_run_id is not None:
        transitions = read_transitions(connection, run_id, previous_run_id)
    return ReportData(
        run, evaluations, profiles, customers, previous_run_id, transitions, segment_features, dataset,
        previous_comparable=not earlier or bool(earlier[0].comparable),
        previous_features=tuple(earlier[0].features or ()) if earlier else (), comparable_run_id=comparable_run_id,
    )


def _customer_sample(connection: Connection, run, dataset: Dataset) -> pd.DataFrame:
    """The run's sample of customers (customer_id, segment_id, is_outlier, a1..an), kept for its
    report (`run_samples`, for the newest runs of each segmentation: empty once pruned)."""
    # attributes[i] by position only: no declared name is ever spliced into SQL
    attributes = "".join(f", attributes[{index}] as a{index}" for index in range(1, len(dataset.columns) + 1))
    return pd.read_sql_query(
        sa.text(
            f"select customer_id, segment_id, is_outlier{attributes} from segmentation_internal.run_samples"
            " where run_id = :r order by customer_id"
        ),
        connection,
        params={"r": run.run_id},
    )


def read_transitions(connection: Connection, run_id: int, previous_run_id: int) -> pd.DataFrame:
    """Customers per (segment in `previous_run_id`, segment in `run_id`), None for a customer
    new in the run or gone from it; ordered by both ids, None last. Counted when the run
    published (`segment_transitions`); empty for a run that did not publish."""
    transitions = pd.read_sql_query(
        sa.text(
            "select from_segment_id, to_segment_id, customer_count from segmentation_internal.segment_transitions"
            " where run_id = :r and from_run_id = :p"
        ),
        connection,
        params={"r": run_id, "p": previous_run_id},
    )
    for column in ("from_segment_id", "to_segment_id"):
        transitions[column] = transitions[column].astype(object).where(transitions[column].notna(), None)
    return transitions.sort_values(["from_segment_id", "to_segment_id"], na_position="last", kind="stable").reset_index(
        drop=True
    )


def customers_from_attributes(raw: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """Typed customer rows from customer_id, segment_id, is_outlier and a1..an (attribute text).

    Numbers become floats (NaN where unknown or unreadable), booleans True/False (None where
    unknown), categories stay text (None where unknown).
    """
    customers = pd.DataFrame({
        "customer_id": raw["customer_id"].astype(object) if "customer_id" in raw else pd.Series(dtype=object),
        "segment_id": raw["segment_id"] if "segment_id" in raw else pd.Series(dtype="int64"),
        "is_outlier": raw["is_outlier"].fillna(False).astype(bool) if "is_outlier" in raw else pd.Series(dtype=bool),
    })
    for index, column in enumerate(dataset.columns, start=1):
        text = raw[f"a{index}"] if f"a{index}" in raw else pd.Series([None] * len(raw), dtype=object)
        text = text.astype(object).where(text.notna(), None)
        if column.is_numeric:
            customers[column.name] = pd.to_numeric(text, errors="coerce").astype(float)
        elif column.type == "boolean":
            customers[column.name] = text.map(lambda v: None if v is None else BOOLEAN_WORDS.get(str(v).strip().lower()))
        else:
            customers[column.name] = text
    return customers


# --- what the declaration says ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Feature:
    """A feature as the report shows it: declared if possible, else as the tables name it."""

    name: str
    label: str  # with unit: for axes, legends and table headers
    kind: str  # "numeric", "category" or "boolean"
    log: bool = False


def _feature(dataset: Dataset, name: str, segment_features: pd.DataFrame) -> _Feature:
    try:
        column: Column = dataset.column(name)
    except KeyError:
        rows = segment_features[segment_features["feature"] == name] if len(segment_features) else segment_features
        label, unit = (rows["label"].iloc[0], rows["unit"].iloc[0]) if len(rows) else (name.replace("_", " "), None)
        label = str(label) if _present(label) else name.replace("_", " ")
        label = f"{label} ({unit})" if _present(unit) else label
        numeric = len(rows) > 0 and rows["category"].isna().all()
        return _Feature(name, label, "numeric" if numeric else "category")
    kind = "numeric" if column.is_numeric else column.type
    return _Feature(name, column.axis_label, kind, column.transform == "log")



def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA
