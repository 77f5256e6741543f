"""Feature matrices: from the customers (or a `source` table) to the numbers K-Means sees.

Grain: one row per active customer, ordered by customer id (so the row order of an export
never changes the result). Everything follows the declaration (`segmentation.dataset`):

- number / whole: missing values imputed with the median (counted), `log` transform as
  log(1 + x), then the `scaling` setting (standard by default);
- boolean: 0/1, missing values imputed with the most common value (counted), then scaled
  to unit variance like a number;
- category: one indicator column per category, missing values as a category of their own
  ("(missing)"); the indicators are centred and divided by sqrt(sum p(1 - p)), so that one
  categorical feature carries the same total variance (weight) as one numeric feature,
  whatever its number of categories.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from sklearn.preprocessing import FunctionTransformer, RobustScaler, StandardScaler

from segmentation.dataset import Column, Dataset

MISSING_CATEGORY = "(missing)"


def typed_values(frame: pd.DataFrame, column: Column) -> pd.Series:
    """A declared column in usable form: floats for numbers, 1.0/0.0 for booleans, text for categories."""
    values = frame[column.name]
    if column.is_numeric:
        if values.dtype.kind == "f":  # read as numbers already
            return values
        return pd.to_numeric(values, errors="coerce").astype(float)
    if column.type == "boolean":
        return values.map({"true": 1.0, "false": 0.0}).astype(float)
    return values


@dataclasses.dataclass
class Encoded:
    """The feature matrix of one run (or of one chunk of its customers).

    `matrix`: rows x encoded columns, scaled (what K-Means sees). `unscaled`: the same
    columns before scaling (after imputation and log), used for centroids and spreads.
    `columns`: encoded column names ("income", "region=West"). `n_imputed`: missing values
    filled per feature.
    """

    matrix: np.ndarray
    unscaled: pd.DataFrame
    columns: list[str]
    n_imputed: dict[str, int]


@dataclasses.dataclass
class Encoder:
    """What `fit_encoder` learnt from some customers, to encode these and any others alike.

    Per feature: the fill value of a number (median) or boolean (most common value), the
    categories seen with their shares; the fitted scaler of the numbers. A category that the
    fitting rows never showed gets no column of its own (all its indicators are 0).
    """

    features: list[str]
    scaling: str
    fills: dict[str, float]
    categories: dict[str, list[str]]
    shares: dict[str, pd.Series]
    numeric: list[str]
    scaler: object | None
    columns: list[str]

    def transform(self, frame: pd.DataFrame, dataset: Dataset) -> Encoded:
        """Encode `frame` (customers as read: ids and declared columns as text) with the fitted parameters."""
        numeric_parts, other_parts, n_imputed = {}, [], {}
        for name in self.features:
            column = dataset.column(name)
            values = typed_values(frame, column)
            if column.type == "category":
                filled = values.fillna(MISSING_CATEGORY)
                n_imputed[name] = 0
                indicators = pd.get_dummies(filled, prefix=name, prefix_sep="=", dtype=float)
                indicators = indicators.reindex(columns=self.categories[name], fill_value=0.0)
                other_parts.append(_weighted(indicators, self.scaling, self.shares[name]))
                continue
            n_imputed[name] = int(values.isna().sum())
            filled = values.fillna(self.fills[name])
            if column.type == "boolean":
                other_parts.append(_weighted(filled.to_frame(name), self.scaling, self.shares[name]))
                continue
            if column.transform == "log":
                filled = np.log1p(filled.clip(lower=0))
            numeric_parts[name] = filled
        pieces = []
        if numeric_parts:
            numeric = pd.DataFrame(numeric_parts, index=frame.index)[self.numeric]
            scaled = self.scaler.transform(numeric.to_numpy()) if len(numeric) else numeric.to_numpy()
            pieces.append((numeric, pd.DataFrame(np.asarray(scaled, dtype=np.float64), index=frame.index, columns=numeric.columns)))
        pieces.extend(other_parts)
        unscaled = pd.concat([piece[0] for piece in pieces], axis=1)[self.columns]
        scaled = pd.concat([piece[1] for piece in pieces], axis=1)[self.columns]
        return Encoded(
            matrix=scaled.to_numpy(dtype=np.float64), unscaled=unscaled, columns=self.columns, n_imputed=n_imputed
        )


def unusable_feature(frame: pd.DataFrame, dataset: Dataset, features: list[str], n_customers: int) -> str | None:
    """Why K-Means cannot use a feature of `frame` (the customers fitted on: all, or a seeded
    sample of the `n_customers`), as one sentence naming the feature; None when all can be used.

    A feature is unusable when no customer has a value (a column empty on every line, or
    all NULL in a source), or when every customer has the same one once missing values are
    imputed (a number's median, a boolean's most common value; for a category, missing is a
    category of its own). Segments, names and advice resting on it would be made up.
    """
    customers = f"the {len(frame):,} customers" + (
        f" of the seeded sample (of {n_customers:,})" if len(frame) < n_customers else "")
    for name in features:
        column = dataset.column(name)
        values = typed_values(frame, column)
        known = values.dropna()
        where = f"feature {name}" + (f" (column {column.source!r})" if column.source != name else "")
        if known.empty:
            return f"{where} has no value for any of {customers}; fill it in the data or leave it out of features"
        missing_is_a_category = column.type == "category" and len(known) < len(values)
        if known.nunique() == 1 and not missing_is_a_category:
            value = known.iloc[0]
            shown = {1.0: "true", 0.0: "false"}[value] if column.type == "boolean" else value
            shown = f"{shown:g}" if isinstance(shown, float) else repr(shown)
            return (f"{where} has one value only ({shown}) among {customers}; it cannot set segments apart:"
                    " leave it out of features")
    return None


def fit_encoder(frame: pd.DataFrame, dataset: Dataset, features: list[str], scaling: str) -> Encoder:
    """Learn the encoding of `features` (declared names) from a customers frame (all or a sample)."""
    fills, categories, shares, numeric_parts = {}, {}, {}, {}
    for name in features:
        column = dataset.column(name)
        values = typed_values(frame, column)
        if column.type == "category":
            indicators = pd.get_dummies(values.fillna(MISSING_CATEGORY), prefix=name, prefix_sep="=", dtype=float)
            categories[name] = sorted(indicators.columns)
            shares[name] = indicators[categories[name]].mean()
            continue
        if column.type == "boolean":
            mode = values.mode()
            fills[name] = float(mode.iloc[0]) if len(mode) else 0.0
            shares[name] = values.fillna(fills[name]).to_frame(name).mean()
            continue
        median = values.median()
        fills[name] = 0.0 if np.isnan(median) else median
        filled = values.fillna(fills[name])
        numeric_parts[name] = np.log1p(filled.clip(lower=0)) if column.transform == "log" else filled
    scaler = make_scaler(scaling).fit(pd.DataFrame(numeric_parts).to_numpy()) if numeric_parts else None
    encoded_names = {name: categories.get(name, [name]) for name in features}
    # keep the order of `features`, each feature's encoded columns together
    columns = [encoded for name in features for encoded in encoded_names[name]]
    return Encoder(
        features=list(features), scaling=scaling, fills=fills, categories=categories, shares=shares,
        numeric=list(numeric_parts), scaler=scaler, columns=columns,
    )


def encode(frame: pd.DataFrame, dataset: Dataset, features: list[str], scaling: str) -> Encoded:
    """Build the feature matrix of `features` (declared names) from a customers frame."""
    return fit_encoder(frame, dataset, features, scaling).transform(frame, dataset)


def _weighted(indicators: pd.DataFrame, scaling: str, shares: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Centre 0/1 columns by their fitted `shares` and divide by sqrt(sum p(1 - p)): the feature's total variance is 1."""
    if scaling == "none":
        return indicators, indicators
    return indicators, (indicators - shares) / indicator_divisor(shares)


def indicator_divisor(shares: pd.Series) -> float:
    """What a 0/1 feature's centred columns are divided by: sqrt(sum p(1 - p)) of its fitted shares (1 if 0)."""
    total_variance = float((shares * (1 - shares)).sum())
    return np.sqrt(total_variance) if total_variance > 0 else 1.0


def scaler_parameters(scaler) -> tuple[np.ndarray, np.ndarray] | None:
    """(centre, scale) per numeric column of a fitted `make_scaler` transformer: it computes
    (x - centre) / scale. None for `none` (the identity)."""
    if isinstance(scaler, StandardScaler):
        return scaler.mean_, scaler.scale_
    if isinstance(scaler, RobustScaler):
        return scaler.center_, scaler.scale_
    return None


def scaler_from_parameters(method: str, parameters: list | None, n_numeric: int):
    """A fitted `make_scaler(method)` transformer with the given (centre, scale) per numeric
    column (from `scaler_parameters`), or None without numeric columns: it transforms exactly as
    the scaler those parameters came from."""
    if n_numeric == 0:
        return None
    scaler = make_scaler(method)
    if method == "none":
        return scaler.fit(np.zeros((1, n_numeric)))
    centre, scale = (np.array(values, dtype=np.float64) for values in parameters)
    if method == "standard":
        scaler.mean_, scaler.scale_, scaler.var_ = centre, scale, scale**2
        scaler.n_samples_seen_ = np.int64(1)
    else:
        scaler.center_, scaler.scale_ = centre, scale
    scaler.n_features_in_ = n_numeric
    return scaler


def make_scaler(method: str):
    """The scikit-learn transformer for the `scaling` setting (standard, robust or none)."""
    if method == "standard":
        return StandardScaler()
    if method == "robust":
        return RobustScaler()
    if method == "none":
        return FunctionTransformer(lambda values: values, inverse_func=lambda values: values)
    raise ValueError(f"unknown scaling {method!r}")
