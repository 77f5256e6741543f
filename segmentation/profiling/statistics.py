"""Per-segment statistics of every customer: what the profiles, the drift figures and the run row need.

They are sums, so that they need no customer in memory: `assignment.statistics` has
PostgreSQL compute them over the customers a run assigned, and `SegmentStatistics.add` adds up
customers held in memory (tests and `profiling.profile_segments`). Being sums, they are also
kept from run to run (`to_json`): a run that assigns only the customers that changed takes the
last run's statistics, less what those customers contributed then, plus what they contribute
now (`combined`).

- per segment: the customer count, the outliers, the sum of each encoded feature before
  scaling (centroids) and, per declared column, the count of known values, their sum and the
  sum of the transformed (log) values; for a category or boolean the count of each value;
- over all customers: the sum of squares of each encoded feature and of each numeric
  column, as it is and transformed (spreads).

Medians cannot be added up; they come from the fitting sample (`medians`), which holds every
customer whenever there are at most `fit_sample_size` of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segmentation.dataset import Column, Dataset
from segmentation.features import MISSING_CATEGORY, typed_values

#: to_json's format: a run keeping the model combines the stored sums only when they have it
FORMAT_VERSION = 2


def transformed(values: pd.Series, column: Column) -> pd.Series:
    """The values on the scale levels are judged on: log(1 + x) for `log` columns."""
    return np.log1p(values.clip(lower=0)) if column.transform == "log" else values


class SegmentStatistics:
    """Sums per segment id of one run's customers; `add` each chunk, then read the attributes.

    `counts`, `outliers`: Series by segment id. `centroid_sums`: segment id x encoded column.
    `numeric[name]`: segment id x (known, total, total_transformed). `squares[name]`: overall
    sum of squared transformed values; `raw_squares[name]`: of the values as they are. `category_counts[name]`: segment id x value counts
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
        self.raw_squares: dict[str, float] = {}
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
                self.raw_squares[column.name] = self.raw_squares.get(column.name, 0.0) + float((values**2).sum())
                continue
            if column.type == "boolean":
                counted = pd.DataFrame({"true": (values == 1.0).astype(np.int64),
                                        "known": values.notna().astype(np.int64)}).groupby(ids).sum()
            else:
                counted = pd.crosstab(ids.to_numpy(), values.fillna(MISSING_CATEGORY).to_numpy())
            previous = self.category_counts.get(column.name, pd.DataFrame())
            self.category_counts[column.name] = previous.add(counted, fill_value=0)

    def combined(self, added: SegmentStatistics, removed: SegmentStatistics) -> SegmentStatistics:
        """These statistics with `added`'s customers added and `removed`'s taken away (segments
        left with no customer are dropped)."""
        result = SegmentStatistics(self.dataset)

        def net(mine, plus, minus):
            return mine.add(plus, fill_value=0).sub(minus, fill_value=0)

        result.counts = net(self.counts, added.counts, removed.counts).astype(np.int64)
        kept = result.counts[result.counts > 0].index
        result.counts = result.counts.loc[kept]
        result.outliers = net(self.outliers, added.outliers, removed.outliers).reindex(kept).fillna(0).astype(np.int64)
        result.centroid_sums = net(self.centroid_sums, added.centroid_sums, removed.centroid_sums).reindex(kept).fillna(0.0)
        result.encoded_squares = net(self.encoded_squares, added.encoded_squares, removed.encoded_squares)
        for name in self.numeric.keys() | added.numeric.keys():
            empty = pd.DataFrame(columns=["known", "total", "total_transformed"], dtype=float)
            frame = net(self.numeric.get(name, empty), added.numeric.get(name, empty), removed.numeric.get(name, empty))
            frame = frame.reindex(kept).fillna(0)
            frame["known"] = frame["known"].astype(np.int64)
            result.numeric[name] = frame
            result.squares[name] = self.squares.get(name, 0.0) + added.squares.get(name, 0.0) - removed.squares.get(name, 0.0)
            result.raw_squares[name] = (self.raw_squares.get(name, 0.0) + added.raw_squares.get(name, 0.0)
                                        - removed.raw_squares.get(name, 0.0))
        for name in self.category_counts.keys() | added.category_counts.keys():
            empty = pd.DataFrame()
            frame = net(self.category_counts.get(name, empty), added.category_counts.get(name, empty),
                        removed.category_counts.get(name, empty))
            result.category_counts[name] = frame.reindex(kept).fillna(0).astype(np.int64)
        for name in self.n_imputed.keys() | added.n_imputed.keys():
            result.n_imputed[name] = self.n_imputed.get(name, 0) + added.n_imputed.get(name, 0) - removed.n_imputed.get(name, 0)
        return result

    def to_json(self) -> dict:
        """The statistics as JSON-able data (floats by repr, so they read back exactly)."""
        def frame(data: pd.DataFrame) -> dict:
            return {"index": [int(value) for value in data.index], "columns": [str(value) for value in data.columns],
                    "values": [[value.item() if hasattr(value, "item") else value for value in row]
                               for row in data.to_numpy(dtype=object)]}

        def series(data: pd.Series) -> dict:
            return {str(key): value.item() if hasattr(value, "item") else value for key, value in data.items()}

        return {
            "version": FORMAT_VERSION,
            "counts": series(self.counts), "outliers": series(self.outliers),
            "centroid_sums": frame(self.centroid_sums), "encoded_squares": series(self.encoded_squares),
            "numeric": {name: frame(data) for name, data in self.numeric.items()},
            "squares": dict(self.squares), "raw_squares": dict(self.raw_squares),
            "category_counts": {name: frame(data) for name, data in self.category_counts.items()},
            "n_imputed": dict(self.n_imputed),
        }

    @staticmethod
    def readable(data: dict | None) -> bool:
        """Whether `data` (to_json of an earlier run) holds every sum this version keeps."""
        return bool(data) and data.get("version") == FORMAT_VERSION

    @classmethod
    def from_json(cls, data: dict, dataset: Dataset) -> SegmentStatistics:
        def frame(stored: dict) -> pd.DataFrame:
            return pd.DataFrame(stored["values"], index=pd.Index(stored["index"], dtype=np.int64),
                                columns=stored["columns"]).infer_objects()

        def series(stored: dict, dtype) -> pd.Series:
            keys = list(stored)
            index = pd.Index([int(key) for key in keys], dtype=np.int64) if dtype is np.int64 else keys
            return pd.Series([stored[key] for key in keys], index=index, dtype=dtype)

        result = cls(dataset)
        result.counts = series(data["counts"], np.int64)
        result.outliers = series(data["outliers"], np.int64)
        result.counts.index = result.counts.index.astype(np.int64)
        result.centroid_sums = frame(data["centroid_sums"]).astype(float)
        result.encoded_squares = pd.Series(data["encoded_squares"], dtype=float)
        result.numeric = {name: frame(stored) for name, stored in data["numeric"].items()}
        for stored in result.numeric.values():
            stored["known"] = stored["known"].astype(np.int64)
        result.squares = {name: float(value) for name, value in data["squares"].items()}
        result.raw_squares = {name: float(value) for name, value in data["raw_squares"].items()}
        result.category_counts = {name: frame(stored).astype(np.int64) for name, stored in data["category_counts"].items()}
        result.n_imputed = {name: int(value) for name, value in data["n_imputed"].items()}
        return result

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
