"""Keeping the published model from night to night while the data has not moved it.

Assigning every customer again each night costs time proportional to the customer count, while
most customers and the segments themselves do not change. So a run first asks whether a refit
would move anything: it encodes tonight's sample with the published model's encoding, runs
K-Means from the published centres on it, and compares. When no centre moves more than
`model_tolerance` (in scaled units: standard deviations by default), no scaling parameter
shifts more than that (relative to its scale), no category appears that the encoding does not
know, the settings that shape the model are the same and the model is younger than
`refit_days`, the published model is kept exactly (encoding, centres, segment ids, outlier
fences): a customer whose values did not change keeps the very same segment, distance and flags,
so only the customers that changed need assigning. Otherwise the run chooses k and fits afresh.

The model is stored with each run as JSON (`to_json`, `from_json`): floats are written by
Python's repr, which reads back to the same double, so a kept model assigns bit for bit as it
did when it was fitted.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from segmentation import features
from segmentation.dataset import Dataset
from segmentation.model import clustering
from segmentation.model.fitting import Fitted
from segmentation.settings import Settings

log = logging.getLogger(__name__)

#: settings that decide what model a run fits: a kept model must have been fitted under the same
MODEL_SETTINGS = (
    "features", "scaling", "k", "k_min", "k_max", "k_ceiling", "random_state", "n_init", "min_segment_share", "min_stability",
    "fit_sample_size", "selection_sample_size", "gap_references", "stability_resamples", "silhouette_rows",
)


def model_settings(settings: Settings) -> dict:
    return {name: getattr(settings, name) for name in MODEL_SETTINGS}


def to_json(fitted: Fitted, settings: Settings, fitted_by: int) -> dict:
    """Everything needed to assign customers exactly as `fitted` does, as JSON-able data;
    `fitted_by`: the run that fitted it (a run that keeps a model stores it unchanged)."""
    encoder = fitted.encoder
    parameters = features.scaler_parameters(encoder.scaler)
    return {
        "fitted_by": int(fitted_by),
        "k": int(fitted.k),
        "features": list(encoder.features),
        "scaling": encoder.scaling,
        "fills": {name: float(value) for name, value in encoder.fills.items()},
        "categories": {name: list(values) for name, values in encoder.categories.items()},
        "shares": {name: {str(key): float(value) for key, value in shares.items()} for name, shares in encoder.shares.items()},
        "numeric": list(encoder.numeric),
        "scaler": None if parameters is None else [list(map(float, parameters[0])), list(map(float, parameters[1]))],
        "columns": list(encoder.columns),
        "centres": [list(map(float, centre)) for centre in fitted.model.cluster_centers_.astype(np.float64)],
        "ids_by_label": [int(value) for value in fitted.ids_by_label],
        "fences": [float(value) for value in fitted.fences],
        "settings": model_settings(settings),
    }


@dataclasses.dataclass
class StoredModel:
    """A published run's model, read back from its JSON."""

    run_id: int  # the latest run that published it
    fitted_at: datetime.datetime  # when the run that fitted it (not merely kept it) started
    fitted_by: int  # that run
    encoder: features.Encoder
    model: KMeans
    ids_by_label: np.ndarray
    fences: np.ndarray
    settings: dict
    rationale: str | None = None  # why the fitting run chose k
    evaluations: pd.DataFrame | None = None  # the fitting run's candidates k


def from_json(data: dict, run_id: int, fitted_at: datetime.datetime, rationale: str | None = None,
              evaluations: pd.DataFrame | None = None) -> StoredModel:
    centres = np.array(data["centres"], dtype=np.float64)
    model = KMeans(n_clusters=len(centres))
    model.cluster_centers_ = centres
    model.n_features_in_ = centres.shape[1]
    encoder = features.Encoder(
        features=list(data["features"]),
        scaling=data["scaling"],
        fills={name: float(value) for name, value in data["fills"].items()},
        categories={name: list(values) for name, values in data["categories"].items()},
        shares={name: pd.Series(values, dtype=float) for name, values in data["shares"].items()},
        numeric=list(data["numeric"]),
        scaler=features.scaler_from_parameters(data["scaling"], data["scaler"], len(data["numeric"])),
        columns=list(data["columns"]),
    )
    return StoredModel(
        run_id=run_id, fitted_at=fitted_at, fitted_by=int(data.get("fitted_by", run_id)), encoder=encoder, model=model,
        ids_by_label=np.array(data["ids_by_label"], dtype=np.int64), fences=np.array(data["fences"], dtype=np.float64),
        settings=dict(data.get("settings") or {}), rationale=rationale, evaluations=evaluations,
    )


def _scaling_shift(stored: features.Encoder, tonight: features.Encoder) -> float:
    """How far tonight's scaling parameters are from the stored ones, in units of the stored scale."""
    old, new = features.scaler_parameters(stored.scaler), features.scaler_parameters(tonight.scaler)
    if old is None or new is None:
        return 0.0
    scale = np.where(old[1] > 0, old[1], 1.0)
    return float(max(np.max(np.abs(new[0] - old[0]) / scale, initial=0.0), np.max(np.abs(new[1] - old[1]) / scale, initial=0.0)))


def keep(
    stored: StoredModel | None, sample: pd.DataFrame, n_customers: int, dataset: Dataset, settings: Settings,
    now: datetime.datetime,
) -> tuple[Fitted | None, str]:
    """The stored model as tonight's `Fitted` when a refit would not move it, else None; and why, in words."""
    if stored is None:
        return None, "no earlier published model of this declaration"
    if settings.model_tolerance <= 0:
        return None, "model_tolerance is 0: refit every run"
    if stored.settings != model_settings(settings):
        return None, "the settings that shape the model changed"
    age = now - stored.fitted_at
    if age > datetime.timedelta(days=settings.refit_days):
        return None, f"the model of run {stored.fitted_by} is {age.days} days old (refit_days {settings.refit_days})"
    encoder = stored.encoder
    numbers = sample.copy()  # each numeric column converted once, not by every use below
    for name in encoder.features:
        if dataset.column(name).is_numeric:
            numbers[name] = features.typed_values(sample, dataset.column(name))
    tonight = features.fit_encoder(numbers, dataset, encoder.features, encoder.scaling)
    unknown = [name for name in encoder.categories if set(tonight.categories[name]) - set(encoder.categories[name])]
    if unknown:
        return None, f"new categories in {', '.join(unknown)}"
    scaling_shift = _scaling_shift(encoder, tonight)
    scaled = encoder.transform(numbers, dataset).matrix
    k = len(stored.model.cluster_centers_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        refit = clustering.fit_kmeans(scaled, k, random_state=settings.random_state, n_init=1,
                                      init=stored.model.cluster_centers_)
    centre_shift = float(np.sqrt(((refit.cluster_centers_ - stored.model.cluster_centers_) ** 2).sum(axis=1)).max())
    moved = max(centre_shift, scaling_shift)
    if moved > settings.model_tolerance:
        return None, (f"a refit moves the model of run {stored.fitted_by} by {moved:.3g}"
                      f" (centres {centre_shift:.3g}, scaling {scaling_shift:.3g}; model_tolerance {settings.model_tolerance:g})")
    on_sample = clustering.assign(stored.model, scaled, stored.ids_by_label, stored.fences)
    silhouette = None
    if k > 1 and len(np.unique(on_sample.labels)) > 1:
        from segmentation.model import selection

        picked = selection.seeded_sample(np.arange(len(scaled)), settings.silhouette_rows, settings.random_state)
        silhouette = selection.silhouette_scores(scaled[picked], [on_sample.labels[picked]])[0]
    fitted_by = stored.fitted_by
    reason = (f"k = {k} kept from run {fitted_by}: a refit on tonight's sample moves its model by {moved:.3g}"
              f" (model_tolerance {settings.model_tolerance:g}), so only customers that changed are assigned."
              + (f" Run {fitted_by} chose it: {stored.rationale}" if stored.rationale else ""))
    if stored.evaluations is not None and len(stored.evaluations):
        evaluations = stored.evaluations  # the candidates the fitting run chose k among
    else:
        evaluations = pd.DataFrame({
            "k": [k], "inertia": [float(refit.inertia_)], "silhouette": [silhouette], "davies_bouldin": [None],
            "calinski_harabasz": [None], "gap": [None], "gap_sd": [None], "stability_ari": [None], "is_elbow": [False],
            "gap_choice": [False], "votes": [0], "smallest_segment_share": [
                float(np.bincount(on_sample.labels, minlength=k).min() / max(len(on_sample.labels), 1))
            ], "reference_silhouette": [None], "reference_silhouette_max": [None], "silhouette_gain": [None],
        })
    # the structure gate's reference: the fitting run's, for this very model (a refit would not move it)
    chosen = evaluations[evaluations["k"] == k]
    reference = lambda column: (  # noqa: E731
        float(chosen[column].iloc[0]) if column in chosen and len(chosen) and pd.notna(chosen[column].iloc[0]) else None
    )
    fitted = Fitted(
        k=k, k_selection="kept", rationale=reason, silhouette=silhouette,
        reference_silhouette=reference("reference_silhouette"),
        reference_silhouette_max=reference("reference_silhouette_max"), evaluations=evaluations, encoder=encoder,
        model=stored.model, ids_by_label=stored.ids_by_label, fences=stored.fences, sample=sample,
        sample_segment_ids=on_sample.segment_ids, n_customers=n_customers,
    )
    return fitted, reason
