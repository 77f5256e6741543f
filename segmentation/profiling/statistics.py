"""Per-segment statistics of every customer: what the profiles, the drift figures and the run row need.

They are sums, so that they need no customer in memory: `assignment.statistics` has
PostgreSQL compute them over the run's partition, and `SegmentStatistics.add` adds up
customers held in memory (tests and `profiling.profile_segments`):

- per segment: the customer count, the outliers, the sum of each encoded feature before
  scaling (centroids) and, per declared column, the count of known values, their sum and the
  sum of the transformed (log) values; for a category or boolean the count of each value;
- over all customers: the sum of squares of each encoded feature and of each transformed
  numeric column (spreads).

Medians cannot be added up; they come from the fitting sample (`medians`), which holds every
customer whenever there are at most `fit_sample_size` of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segmentation.dataset import Column, Dataset
from segmentation.features import MISSING_CATEGORY, typed_values


def transformed(values: pd.Series, column: Column) -> pd.Series:
    """The values on the scale levels are judged on: log(1 + x) for `log` columns."""
    return np.log1p(values.clip(lower=0)) if column.transform == "log" else values


class SegmentStatistics:
    """Sums per segment id of one run's customers; `add` each chunk, then read the attributes.

    `counts`, `outliers`: Series by segment id. `centroid_sums`: segment id x encoded column.
    `numeric[name]`: segment id x (known, total, total_transformed). `squares[name]`: overall
    sum of squared transformed values. `category_counts[name]`: segment id x value counts
    (booleans: "true" and "known"). `encoded_squares`: overall sum of squares per encoded column.
    `n_imputed`: missing values filled per feature.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.counts = pd.Series(dtype=np.int64)
        self.outliers = pd.Series(dtype=np.int64)
        self.centroid_sums = pd.DataFrame()
        self.encoded_squares = pd.Series(dtype=float)
        self.numeric: dict[str, pd.DataFrame] = {}
        self.squares: dict[str, float] = {}
        self.category_counts: dict[str, pd.DataFrame] = {}
        self.n_imputed: dict[str, int] = {}

    def add(
        self, customers: pd.DataFrame, encoded_unscaled: pd.DataFrame, segment_ids: np.ndarray,
        is_outlier: np.ndarray, n_imputed: dict[str, int],
    ) -> None:
        """Add one chunk: its customers (as read), their encoded features and assignment."""
        ids = pd.Series(np.asarray(segment_ids), index=customers.index, name="segment_id")
        self.counts = self.counts.add(ids.value_counts(), fill_value=0).astype(np.int64)
        self.outliers = self.outliers.add(
            pd.Series(np.asarray(is_outlier, dtype=np.int64), index=customers.index).groupby(ids).sum(), fill_value=0
        ).astype(np.int64)
        self.centroid_sums = self.centroid_sums.add(encoded_unscaled.groupby(ids).sum(), fill_value=0)
        self.encoded_squares = self.encoded_squares.add((encoded_unscaled**2).sum(), fill_value=0)
        for name, count in n_imputed.items():
            self.n_imputed[name] = self.n_imputed.get(name, 0) + count
        for column in self.dataset.columns:
            values = typed_values(customers, column)
            if column.is_numeric:
                scale = transformed(values, column)
                sums = pd.DataFrame(
                    {"known": values.notna().astype(np.int64), "total": values.fillna(0.0),
                     "total_transformed": scale.fillna(0.0)}
                ).groupby(ids).sum()
                self.numeric[column.name] = self.numeric.get(column.name, pd.DataFrame()).add(sums, fill_value=0)
                self.squares[column.name] = self.squares.get(column.name, 0.0) + float((scale**2).sum())
                continue
            if column.type == "boolean":
                counted = pd.DataFrame({"true": (values == 1.0).astype(np.int64),
                                        "known": values.notna().astype(np.int64)}).groupby(ids).sum()
            else:
                counted = pd.crosstab(ids.to_numpy(), values.fillna(MISSING_CATEGORY).to_numpy())
            previous = self.category_counts.get(column.name, pd.DataFrame())
            self.category_counts[column.name] = previous.add(counted, fill_value=0)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def centroids(self) -> pd.DataFrame:
        """Segment id x encoded column: each segment's mean before scaling."""
        return self.centroid_sums.div(self.counts, axis=0)

    def spread(self) -> np.ndarray:
        """Standard deviation (ddof 0) of each encoded column over all customers."""
        mean = self.centroid_sums.sum() / self.total
        return np.sqrt(np.maximum(self.encoded_squares / self.total - mean**2, 0.0)).to_numpy()


def medians(sample: pd.DataFrame, segment_ids: np.ndarray, dataset: Dataset) -> dict[str, pd.Series]:
    """Per numeric declared column: the median of each segment's known values in `sample`."""
    return {
        column.name: typed_values(sample, column).groupby(np.asarray(segment_ids)).median()
        for column in dataset.columns
        if column.is_numeric
    }
