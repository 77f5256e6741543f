"""Feature matrices: from the customers table to the scaled numbers K-Means sees.

Grain: one row per active customer, ordered by customer id (so the input row order of any
export never changes the result). Gender becomes `is_female` (1.0 / 0.0). Missing values
are imputed with the column median and counted.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from sklearn.preprocessing import FunctionTransformer, RobustScaler, StandardScaler
from sqlalchemy.engine import Connection

CUSTOMER_COLUMNS = ("customer_id", "gender", "age", "annual_income_k", "spending_score")

#: Readable labels (with units) of each feature, for names, reports and logs.
FEATURE_LABELS = {
    "annual_income_k": "annual income (k$)",
    "spending_score": "spending score (1-100)",
    "age": "age (years)",
    "gender": "female share",
}


def read_active_customers(connection: Connection) -> pd.DataFrame:
    """All active customers (one row each, ordered by customer_id), read by COPY.

    Columns: customer_id (int64), gender (object: Female, Male or None), age (float),
    annual_income_k (float), spending_score (float); NaN where unknown.
    """
    buffer = io.BytesIO()
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:
        with cursor.copy(
            "copy (select customer_id, gender, age, annual_income_k, spending_score"
            " from segmentation.customers where is_active order by customer_id)"
            " to stdout with (format csv)"
        ) as copy:
            for block in copy:
                buffer.write(block)
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame(
            {
                "customer_id": pd.Series(dtype="int64"),
                "gender": pd.Series(dtype="object"),
                "age": pd.Series(dtype="float64"),
                "annual_income_k": pd.Series(dtype="float64"),
                "spending_score": pd.Series(dtype="float64"),
            }
        )
    return pd.read_csv(
        buffer,
        header=None,
        names=list(CUSTOMER_COLUMNS),
        dtype={"customer_id": "int64", "gender": "object", "age": "float64",
               "annual_income_k": "float64", "spending_score": "float64"},
        keep_default_na=False,
        na_values={"gender": [""], "age": [""], "annual_income_k": [""], "spending_score": [""]},
    )


def feature_frame(customers: pd.DataFrame, features: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Numeric feature columns in original units, NaN imputed by the median.

    Returns the frame (same index as `customers`, one column per feature) and the number
    of values imputed per feature.
    """
    columns = {}
    for name in features:
        if name == "gender":
            gender = customers["gender"]
            columns[name] = np.where(gender.isna(), np.nan, (gender == "Female").astype(float))
        else:
            columns[name] = customers[name].astype(float).to_numpy()
    frame = pd.DataFrame(columns, index=customers.index)
    imputed = {}
    for name in features:
        missing = int(frame[name].isna().sum())
        imputed[name] = missing
        if missing:
            median = frame[name].median()
            frame[name] = frame[name].fillna(0.0 if np.isnan(median) else median)
    return frame, imputed


def make_scaler(method: str):
    """The scikit-learn transformer for the `scaling` setting (standard, robust or none)."""
    if method == "standard":
        return StandardScaler()
    if method == "robust":
        return RobustScaler()
    if method == "none":
        return FunctionTransformer(lambda values: values, inverse_func=lambda values: values)
    raise ValueError(f"unknown scaling {method!r}")
