"""Choosing k and fitting K-Means on a seeded sample of the customers; no I/O.

`segment` encodes the sample, evaluates the candidate k, fits the chosen one and gives its
clusters their published ids (matched to the previous run's centroids) and outlier fences:
everything `assignment` needs to assign every customer in the database.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from segmentation import features, publish
from segmentation.errors import NothingToSegment, RunHeld
from segmentation.model import clustering
from segmentation.model import selection as model_selection
from segmentation.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Fitted:
    """Choosing k and fitting, on a seeded sample: everything needed to assign every customer.

    `ids_by_label[label]`: the published segment id of K-Means cluster `label` (matched to the
    previous run's centroids). `fences[label]`: its outlier fence, from the sample's distances.
    `sample` and `sample_segment_ids`: the fitting sample and its segments (for medians).
    """

    k: int
    k_selection: str
    rationale: str
    silhouette: float | None
    reference_silhouette: float | None
    reference_silhouette_max: float | None
    evaluations: pd.DataFrame
    encoder: features.Encoder
    model: KMeans
    ids_by_label: np.ndarray
    fences: np.ndarray
    sample: pd.DataFrame
    sample_segment_ids: np.ndarray
    n_customers: int


def segment(
    sample: pd.DataFrame, n_customers: int, settings: Settings, previous: publish.PreviousRun | None,
    next_free_id: int,
) -> Fitted:
    """Pure middle of the run, on a seeded sample of the `n_customers` active customers: encode,
    choose k, fit, give the clusters their published ids. No I/O.

    `sample` has customer_id and each declared column as validated text (see
    `features.read_active_customers`); it is every customer when there are at most
    `fit_sample_size`, so small data sets are fitted exactly as before sampling existed.
    """
    dataset = settings.declaration
    if n_customers < max(settings.k_min, 2) + 1:
        raise NothingToSegment(
            f"only {n_customers} active customers; at least {max(settings.k_min, 2) + 1} are needed to fit segments"
        )
    if settings.k is not None and settings.k >= n_customers:
        raise NothingToSegment(f"k = {settings.k} segments asked for, but there are only {n_customers} customers")
    unusable = features.unusable_feature(sample, dataset, settings.features, n_customers)
    if unusable:
        raise RunHeld(f"run held, not published: {unusable}. The previous run stays current")
    encoder = features.fit_encoder(sample, dataset, settings.features, settings.scaling)
    encoded = encoder.transform(sample, dataset)
    scaled = encoded.matrix

    selection = model_selection.seeded_sample(scaled, settings.selection_sample_size, settings.random_state)
    k_max = min(settings.k_max, len(selection) - 1)
    options = dict(
        random_state=settings.random_state, n_init=settings.n_init, gap_references=settings.gap_references,
        stability_resamples=settings.stability_resamples, silhouette_rows=settings.silhouette_rows,
        n_jobs=settings.workers, blocks=feature_blocks(encoder),
    )
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if settings.k is None:
            evaluations, models, k, rationale = model_selection.search(
                selection, settings.k_min, k_max, max(settings.k_ceiling, k_max),
                min_stability=settings.min_stability, min_segment_share=settings.min_segment_share,
                previous_k=len(previous.sizes) if previous is not None and previous.sizes else None, **options,
            )
            k_selection = "automatic"
        else:
            k = settings.k
            evaluations, models = model_selection.evaluate_candidates(selection, range(k, k + 1), return_models=True, **options)
            rationale = f"k = {k}: fixed by the k setting."
            k_selection = "fixed"
        if any(issubclass(item.category, ConvergenceWarning) for item in caught):
            log.warning(
                "K-Means found fewer distinct groups than asked for some k: the features have few distinct"
                " values (%s); such k cannot be chosen", ", ".join(settings.features)
            )
    log.info("evaluated k in %s on %d rows in %.1f s", evaluations["k"].tolist(), len(selection), time.monotonic() - started)

    if len(selection) == len(scaled):  # the candidate was fitted on these very rows
        model = models[k]
    else:  # one run on the larger sample, from the candidate's centres
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = clustering.fit_kmeans(
                scaled, k, random_state=settings.random_state, n_init=1, init=models[k].cluster_centers_
            )
    labels = model.labels_
    sizes = np.bincount(labels, minlength=k)
    centroids = encoded.unscaled.groupby(labels).mean().reindex(range(k)).to_numpy()
    spread = encoded.unscaled.std(ddof=0).to_numpy()
    ids_by_label = clustering.stable_segment_ids(centroids, sizes, spread, previous_centroids(previous, encoder.columns), next_free_id)
    on_sample = clustering.assign(model, scaled, ids_by_label)  # the fences' distances, as every customer's will be
    chosen = evaluations.set_index("k").loc[k]
    known = lambda value: None if pd.isna(value) else float(value)  # noqa: E731
    return Fitted(
        k=k,
        k_selection=k_selection,
        rationale=rationale,
        silhouette=known(chosen["silhouette"]),
        reference_silhouette=known(chosen["reference_silhouette"]),
        reference_silhouette_max=known(chosen["reference_silhouette_max"]),
        evaluations=evaluations,
        encoder=encoder,
        model=model,
        ids_by_label=ids_by_label,
        fences=clustering.outlier_fences(on_sample.labels, on_sample.distances, k),
        sample=sample,
        sample_segment_ids=on_sample.segment_ids,
        n_customers=n_customers,
    )


def feature_blocks(encoder: features.Encoder) -> list[list[int]]:
    """The encoded columns of each feature (a category's indicators together), by position."""
    positions = {name: position for position, name in enumerate(encoder.columns)}
    return [[positions[name] for name in encoder.categories.get(feature, [feature])] for feature in encoder.features]


def previous_centroids(previous: publish.PreviousRun | None, columns: list[str]) -> dict[int, np.ndarray] | None:
    if previous is None:
        return None
    return {segment_id: np.array([centre.get(name, 0.0) for name in columns]) for segment_id, centre in previous.centroids.items()}
