"""One source of settings for the job, Alembic's env.py and the tests.

Precedence, highest first: command-line flags (passed as keyword arguments), environment
variables (`DATABASE_URL`, and `SEGMENT_*` for the rest), an optional TOML file
(`SEGMENT_CONFIG`, else `./segment.toml` when it exists), then the defaults below.
Everything is validated on construction, so bad configuration fails before any work.
"""

from __future__ import annotations

import datetime
import os
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import AliasChoices, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from segmentation.dataset import Dataset, Rule, check_rules, parse_dataset, parse_rules
from segmentation.errors import ConfigurationError
from segmentation.orders import OrdersSpec, parse_orders, with_rfm

DEFAULT_CONFIG_FILE = Path("segment.toml")


def _config_file() -> Path | None:
    named = os.environ.get("SEGMENT_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigurationError(f"SEGMENT_CONFIG names {path}, which is not a readable file")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


class Settings(BaseSettings):
    """Validated settings of one job invocation."""

    model_config = SettingsConfigDict(env_prefix="SEGMENT_", extra="forbid", populate_by_name=True)

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("database_url", "DATABASE_URL"),
        description="postgresql:// or postgresql+psycopg:// URL; unset starts the embedded server",
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("customer-segmentation")),
        description="where the embedded PostgreSQL keeps its data (pgdata/) and reports go (reports/)",
    )
    dataset: dict[str, Any] | None = Field(
        default=None,
        description="the data set's declaration ([dataset] in TOML); unset: the mall's five columns",
    )
    recommendations: list[dict[str, Any]] = Field(
        default_factory=list, description="[[recommendations]] rules: when = {feature = level}, text; first match wins"
    )
    features: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="clustering features: declared column names (default: the declaration's defaults, else all)",
    )
    source: str | None = Field(
        default=None,
        description="an existing table or view (schema.name) with one row per customer, read instead of importing",
    )
    orders: dict[str, Any] | None = Field(
        default=None,
        description="[orders] in TOML: the order export's headers (customer_id, date, amount or quantity and"
        " unit_price, order_id, date_format, currency); set: segment on recency, frequency and monetary value",
    )
    as_of: datetime.date | None = Field(
        default=None,
        description="reference date of recency, frequency and monetary value (orders before it count);"
        " default: the day after the latest order",
    )
    max_reject_share: float = Field(
        default=0.05, ge=0, le=1, description="a run whose import rejected more than this share of lines is held"
    )
    min_segment_share: float = Field(
        default=0.01, ge=0, lt=1, description="a candidate k with a smaller segment cannot be chosen"
    )
    k_min: int = Field(default=2, ge=2, description="smallest number of segments tried")
    k_max: int = Field(default=10, ge=2, description="largest number of segments tried")
    k: int | None = Field(default=None, ge=2, description="fix the number of segments instead of choosing it")
    random_state: int = Field(default=42, description="seed of every random step (K-Means, samples)")
    n_init: int = Field(default=10, ge=1, description="K-Means restarts; the best inertia wins")
    scaling: Literal["standard", "robust", "none"] = "standard"
    gap_references: int = Field(default=10, ge=0, description="uniform reference sets of the gap statistic (0: off)")
    stability_resamples: int = Field(
        default=10, ge=0, description="bootstrap refits per k for the stability criterion (0: off)"
    )
    min_stability: float = Field(
        default=0.75, ge=0, le=1, description="mean adjusted Rand index a candidate k needs to be chosen"
    )
    silhouette_rows: int = Field(default=10_000, ge=100, description="seeded sample size for silhouette scores")
    selection_sample_size: int = Field(
        default=20_000, ge=100, description="rows (seeded sample) used to evaluate each candidate k"
    )
    fit_sample_size: int = Field(
        default=200_000, ge=100,
        description="rows (seeded sample) the chosen K-Means is fitted on; every customer is then assigned",
    )
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1,
        description="candidate k scored at once (threads, one core each); default: every core",
    )
    export_mode: Literal["incremental", "full"] = Field(
        default="full",
        description="full: customers missing from the file are marked inactive; incremental: left alone",
    )
    column_map: dict[str, str] = Field(
        default_factory=dict,
        description="export header -> customer_id or a declared column name (renames without a [dataset] table)",
    )
    schedule_cron: str = Field(default="0 2 * * *", description="crontab expression of `segment schedule`")
    timezone: str = Field(default="UTC", description="IANA time zone of the schedule")
    lock_wait_seconds: float = Field(
        default=0, ge=0, description="how long a run waits for another run's lock before giving up"
    )

    db_retries: int = Field(default=3, ge=0, description="new attempts after a lost database connection")
    db_retry_delay_seconds: float = Field(
        default=5, ge=0, description="wait before the first retry; doubles with each further retry"
    )
    keep_customer_rows_runs: int = Field(
        default=14, ge=2, description="runs whose per-customer rows are kept (profiles and history: always)"
    )
    missed_run_grace_seconds: float = Field(
        default=6 * 3600, ge=0, description="a scheduled run missed less than this long ago runs at scheduler start"
    )
    min_silhouette: float = Field(
        default=0.25, ge=-1, le=1, description="health gate: a run below this silhouette is held, not published"
    )
    max_size_psi: float = Field(
        default=0.25, ge=0, description="health gate: a run whose segment sizes drift beyond this PSI is held"
    )
    write_report: bool = Field(default=True, description="segment run writes the run's HTML report")
    force_publish: bool = Field(default=False, description="publish even when the health gate would hold the run")
    _declaration: Dataset = PrivateAttr()
    _rules: tuple[Rule, ...] = PrivateAttr(default=())
    _orders: OrdersSpec | None = PrivateAttr(default=None)
    _features_given: bool = PrivateAttr(default=False)
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("features", mode="before")
    @classmethod
    def _split_features(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("DATABASE_URL must start with postgresql:// or postgresql+psycopg://")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @field_validator("schedule_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as error:
            raise ValueError(f"invalid cron expression {value!r}: {error}") from error
        return value

    @field_validator("source")
    @classmethod
    def _qualified_name(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?", value):
            raise ValueError(f"source {value!r} is not a table name such as crm.customer_features")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) is larger than k_max ({self.k_max})")
        declaration = parse_dataset(self.dataset)
        if self.orders is not None:
            if self.source:
                raise ValueError("orders and source: read customers from one place (a source table or the imports)")
            self._orders = parse_orders(self.orders)
            declaration = with_rfm(declaration if self.dataset else None, self._orders)
        rules = parse_rules(self.recommendations)
        check_rules(declaration, rules)
        names = declaration.names
        for header, target in self.column_map.items():
            if target != "customer_id" and target not in names:
                raise ValueError(
                    f"column_map: {header!r} maps to {target!r}, which is neither customer_id nor a declared column"
                    f" ({', '.join(names)})"
                )
        self._features_given = bool(self.features)
        if not self.features:
            self.features = list(declaration.default_features or names)
        unknown = [name for name in self.features if name not in names]
        if unknown:
            raise ValueError(f"features: {unknown[0]!r} is not a declared column; declared: {', '.join(names)}")
        if len(set(self.features)) != len(self.features):
            raise ValueError("features: a feature is listed twice")
        self._declaration = declaration
        self._rules = rules + declaration.rules
        return self

    @property
    def declaration(self) -> Dataset:
        """The parsed data-set declaration (the mall's when none is configured)."""
        return self._declaration

    @property
    def order_spec(self) -> OrdersSpec | None:
        """The parsed `[orders]` table; None when the run does not segment on orders."""
        return self._orders

    def with_orders(self) -> Settings:
        """These settings, segmenting on the orders (as if `[orders]` were given with default spellings)."""
        given = {name: getattr(self, name) for name in self.model_fields_set if name != "features"}
        if self._features_given:
            given["features"] = self.features
        return load_settings(**{**given, "orders": self.orders or {}})

    def for_customer_import(self) -> Settings:
        """These settings with the declaration's imported part only (a customer export has no RFM columns)."""
        copy = self.model_copy()
        copy._declaration = self._declaration.imported()
        return copy

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Recommendation rules: the user's first, then the declaration's own."""
        return self._rules

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    def report_path(self, database_folder: str, run_id: int) -> Path:
        """Where run `run_id`'s report of one database goes: a folder per database, so two
        databases never overwrite each other's run-N.html."""
        return self.reports_dir / database_folder / f"run-{run_id}.html"


#: what a settings value given as JSON in the environment looks like
JSON_EXAMPLES = {
    "column_map": """'{"Client": "customer_id", "Yearly income": "annual_income_k"}'""",
    "dataset": """'{"id_column": "ID", "columns": {"income": {"from": "Income", "type": "number"}}}'""",
    "recommendations": """'[{"when": {"income": "high"}, "text": "Premium offers."}]'""",
}


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from flags (`overrides`, None values ignored), environment and file.

    Raises ConfigurationError with one readable line when anything is invalid.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ConfigurationError:
        raise
    except SettingsError as error:  # an environment variable that should hold JSON does not
        found = re.search(r'field "(\w+)" from source "EnvSettingsSource"', str(error))
        if not found:
            raise ConfigurationError(f"invalid settings: {_one_line(error)}") from error
        reason = f": {error.__cause__}" if error.__cause__ else ""
        raise ConfigurationError(
            f"invalid settings: SEGMENT_{found.group(1).upper()} must be JSON,"
            f" for example {JSON_EXAMPLES.get(found.group(1), '{...}')}{reason}"
        ) from error
    except Exception as error:  # pydantic ValidationError and TOML syntax errors
        raise ConfigurationError(f"invalid settings: {_one_line(error)}") from error


def _one_line(error: Exception) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        parts = []
        for item in errors():
            where = ".".join(str(part) for part in item.get("loc", ()))
            message = str(item.get("msg", "")).removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
        return "; ".join(parts)
    return " ".join(str(error).split())
