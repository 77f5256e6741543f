"""From the stored customers to the matrix K-Means sees.

- `customers`: reading a run's customers (all of them, or the seeded sample) by COPY;
- `source_table`: a `source` table or view checked and staged for the run;
- `staging`: the run's own table of customers when they are not imported ones;
- `encoding`: the declared columns as numbers (imputation, log, scaling, one-hot).

The names the rest of the library uses are re-exported here.
"""

from segmentation.features.customers import (
    SAMPLE_BUCKETS,
    count_active_customers,
    imported_customers,
    read_active_customers,
    read_customers,
    read_sample,
)
from segmentation.features.encoding import (
    MISSING_CATEGORY,
    Encoded,
    Encoder,
    encode,
    fit_encoder,
    indicator_divisor,
    make_scaler,
    scaler_from_parameters,
    scaler_parameters,
    typed_values,
    unusable_feature,
)
from segmentation.features.source_table import stage_source

__all__ = [
    "MISSING_CATEGORY", "SAMPLE_BUCKETS", "Encoded", "Encoder", "count_active_customers", "encode", "fit_encoder",
    "imported_customers", "indicator_divisor", "make_scaler", "read_active_customers", "read_customers",
    "read_sample", "scaler_from_parameters", "scaler_parameters", "stage_source", "typed_values",
    "unusable_feature",
]
