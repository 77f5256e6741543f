"""One source of settings for the job, Alembic's env.py and the tests.

Precedence, highest first: command-line flags (passed as keyword arguments), environment
variables (`DATABASE_URL`, and `SEGMENT_*` for the rest), an optional TOML file
(`SEGMENT_CONFIG`, else `./segment.toml` when it exists), then the defaults below.
Everything is validated on construction, so bad configuration fails before any work.
"""

from __future__ import annotations

import codecs
import datetime
import difflib
import os
import re
import tomllib
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

from segmentation import view_columns
from segmentation.dataset import Dataset, Rule, check_rules, parse_dataset, parse_rules
from segmentation.errors import ConfigurationError, describe
from segmentation.orders import FIRST_ORDER_YEAR, OrdersSpec, latest_order_date, parse_orders, with_rfm

DEFAULT_CONFIG_FILE = Path("segment.toml")
#: most segments a run may have (a candidate k or the k setting)
MAX_SEGMENTS = 1000
DAY_SECONDS = 86_400
#: a `source` name as PostgreSQL reads it: one or two parts, each plain or in double quotes
_IDENTIFIER_PART = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"\x00]|"")+")'
SOURCE_NAME = re.compile(rf"{_IDENTIFIER_PART}(?:\.{_IDENTIFIER_PART})?")


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

    # no NaN or infinity in any number: a NaN passes every range check and breaks the run later
    model_config = SettingsConfigDict(env_prefix="SEGMENT_", extra="forbid", populate_by_name=True, allow_inf_nan=False)

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
    k_min: int = Field(default=2, ge=2, le=MAX_SEGMENTS, description="smallest number of segments tried")
    k_max: int = Field(default=10, ge=2, le=MAX_SEGMENTS, description="largest number of segments tried")
    k_ceiling: int = Field(
        default=15, ge=2, le=MAX_SEGMENTS,
        description="while the best k is the largest tried, the search goes on past k_max up to this (k_max if lower)",
    )
    k: int | None = Field(
        default=None, ge=2, le=MAX_SEGMENTS, description="fix the number of segments instead of choosing it"
    )
    random_state: int = Field(
        default=42, ge=0, lt=2**32, description="seed of every random step (K-Means, samples); 0 to 2**32 - 1"
    )
    n_init: int = Field(default=10, ge=1, le=1000, description="K-Means restarts; the best inertia wins")
    scaling: Literal["standard", "robust", "none"] = "standard"
    gap_references: int = Field(
        default=10, ge=0, le=1000, description="uniform reference sets of the gap statistic (0: off)"
    )
    stability_resamples: int = Field(
        default=10, ge=0, le=1000, description="bootstrap refits per k for the stability criterion (0: off)"
    )
    min_stability: float = Field(
        default=0.75, ge=0, le=1, description="mean adjusted Rand index a candidate k needs to be chosen"
    )
    silhouette_rows: int = Field(
        default=10_000, ge=100, le=100_000,  # its cost grows with the square of the rows
        description="seeded sample size for silhouette scores",
    )
    selection_sample_size: int = Field(
        default=20_000, ge=100, le=10_000_000, description="rows (seeded sample) used to evaluate each candidate k"
    )
    fit_sample_size: int = Field(
        default=200_000, ge=100, le=100_000_000,
        description="rows (seeded sample) the chosen K-Means is fitted on; every customer is then assigned",
    )
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, le=1024,
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
        default=0, ge=0, le=DAY_SECONDS, description="how long a run waits for another run's lock before giving up"
    )

    citus: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: on a database with the citus extension, distribute the per-customer tables by customer_id"
        " at the upgrade (docs/citus.md); off: leave every table on the coordinator",
    )
    db_retries: int = Field(default=3, ge=0, le=100, description="new attempts after a lost database connection")
    db_retry_delay_seconds: float = Field(
        default=5, ge=0, le=3600, description="wait before the first retry; doubles with each further retry"
    )
    keep_customer_rows_runs: int = Field(
        default=14, ge=1, le=100_000,
        description="runs of a segmentation whose customer sample (20,000 customers with their segment, for the run's"
        " report) is kept; every customer's history is kept as changes for history_days",
    )
    segmentation: str = Field(
        default="default",
        description="name of the segmentation the run belongs to (an SQL identifier: lowercase letters, digits,"
        " underscores); each name has its own declaration, customers, runs, segment ids, history and views",
    )
    history_days: int = Field(
        default=400, ge=1, le=100_000,
        description="days each customer's closed segment stretches are kept (customer_segment_history)",
    )
    model_tolerance: float = Field(
        default=0.05, ge=0, le=100,
        description="a night keeps the published model while a refit would move no centre (or scaling parameter)"
        " more than this, in scaled units; only customers that changed are then assigned (0: refit every night)",
    )
    refit_days: float = Field(
        default=7, ge=0, le=36_500,
        description="a kept model is refitted (k chosen again) at the latest this many days after its fit"
    )
    missed_run_grace_seconds: float = Field(
        default=6 * 3600, ge=0, le=7 * DAY_SECONDS,
        description="a scheduled run missed less than this long ago runs at scheduler start",
    )
    min_silhouette_gain: float = Field(
        default=0.05, ge=0, le=2,
        description="health gate: the silhouette must beat that of the same k on the data with each feature shuffled"
        " by this much, else the run is held (no clear structure)",
    )
    min_silhouette: float = Field(
        default=0.0, ge=-1, le=1,
        description="health gate: an absolute floor; a run below this silhouette is held, not published",
    )
    max_size_psi: float = Field(
        default=0.25, ge=0, le=1000, description="health gate: a run whose segment sizes drift beyond this PSI is held"
    )
    encoding: str = Field(
        default="utf-8", description="text encoding of the CSV files (utf-8, cp1252, latin-1, ...; ASCII-compatible)"
    )
    decimal_separator: Literal["auto", ".", ","] = Field(
        default="auto",
        description="decimal mark of numbers in the CSV files: auto ('.', and also ',' in files delimited by ';')",
    )
    order_date_tolerance_days: int = Field(
        default=1, ge=0, le=366,
        description="an order dated more than this many days after today (UTC) is rejected as impossible",
    )
    write_report: bool = Field(default=True, description="segment run writes the run's HTML report")
    force_publish: bool = Field(
        default=False, description="publish even when the health gate would hold the run (recorded in run_history)"
    )
    preview: bool = Field(
        default=False, description="fit, profile and write the report, but publish nothing (to explore another k)"
    )

    # Operations (read by jobs/, never by the library): logs and notifications.
    log_file: Path | None = Field(default=None, description="also log to this file, rotated by size; stderr then"
                                  " keeps only warnings and errors")
    log_format: Literal["text", "json"] = Field(default="text", description="json: one JSON object per log line")
    log_file_max_bytes: int = Field(default=10_000_000, ge=1_000, description="rotate the log file at this size")
    log_file_backups: int = Field(default=5, ge=0, description="rotated log files kept (FILE.1 ... FILE.N)")
    # Both may carry a secret (a chat webhook's token): never stored with the run (exclude).
    notify_command: str | None = Field(
        default=None, exclude=True,
        description="shell command run when a night fails or is held, with the outcome in SEGMENT_RUN_*"
        " environment variables and as JSON on its standard input",
    )
    notify_url: str | None = Field(
        default=None, exclude=True,
        description="http(s) URL that receives the outcome as a JSON POST when a night fails or is held",
    )
    notify_on: Literal["problems", "always"] = Field(
        default="problems", description="problems: failed, held or cancelled nights; always: published ones too"
    )
    notify_timeout_seconds: float = Field(
        default=10, gt=0, le=300, description="how long the notify command or URL may take before it is given up"
    )
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
        """Read as `db.sqlalchemy_url` reads it (a password may hold an unencoded '@'); a URL it
        cannot read is refused with a message that quotes no part of it."""
        if value in (None, ""):
            return None
        from segmentation.db import sqlalchemy_url  # here, not at the top: db pulls in Alembic

        sqlalchemy_url(value)  # raises ConfigurationError, which names no part of the URL
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            name = codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}; for example utf-8, cp1252 or latin-1") from None
        if "\n;,\t|\"".encode(name, errors="replace") != b"\n;,\t|\"":
            raise ValueError(f"encoding {value!r} is not ASCII-compatible (UTF-16?); save the files as UTF-8")
        return name

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

    @field_validator("notify_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"https?://[^/\s]+", value):
            raise ValueError("notify_url must be an http:// or https:// URL")
        return value

    @field_validator("source")
    @classmethod
    def _qualified_name(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not SOURCE_NAME.fullmatch(value):
            raise ValueError(
                f"source {value[:80]!r} is not a table name such as crm.customer_features (or crm.\"CustomerFeatures\""
                " with double quotes around a part in mixed case)"
            )
        return value

    @field_validator("segmentation")
    @classmethod
    def _segmentation_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,39}", value):
            raise ValueError(
                f"{value!r}: a segmentation name is lowercase letters, digits and underscores, starting with a letter"
                " or underscore, at most 40 characters (it names the schema segments_NAME)"
            )
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
        view_columns.check(declaration)
        if self.as_of is not None:
            first = datetime.date(FIRST_ORDER_YEAR, 1, 2)
            last = latest_order_date(self.order_date_tolerance_days) + datetime.timedelta(days=1)
            if not first <= self.as_of <= last:
                raise ValueError(
                    f"as_of: {self.as_of} is outside {first}..{last} (tomorrow plus order_date_tolerance_days);"
                    " a reference date in the future makes every recency too long"
                )
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
    def order_reading(self) -> dict[str, Any]:
        """How order files are read: the keyword arguments of `orders.ingest.import_orders`."""
        return {"encoding": self.encoding, "decimal_separator": self.decimal_separator,
                "date_tolerance_days": self.order_date_tolerance_days}

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

    Raises ConfigurationError with one readable line when anything is invalid, naming where
    the bad value came from (the TOML file or the environment variable) and, for an unknown
    key, the likely one.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ConfigurationError:
        raise
    except SettingsError as error:  # an environment variable that should hold JSON does not
        found = re.search(r'field "(\w+)" from source "EnvSettingsSource"', str(error))
        if not found:
            raise ConfigurationError(f"invalid settings: {_one_line(error, given)}") from error
        reason = f": {error.__cause__}" if error.__cause__ else ""
        raise ConfigurationError(
            f"invalid settings: SEGMENT_{found.group(1).upper()} must be JSON,"
            f" for example {JSON_EXAMPLES.get(found.group(1), '{...}')}{reason}"
        ) from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"invalid settings: {_config_file()} is not valid TOML: {error}") from error
    except Exception as error:  # pydantic's ValidationError
        raise ConfigurationError(f"invalid settings: {_one_line(error, given)}") from error


def _environment_name(field: str) -> str:
    return "DATABASE_URL" if field == "database_url" else f"SEGMENT_{field.upper()}"


def _origin(field: str, given: dict[str, Any]) -> str | None:
    """Where a setting's value came from: None for a flag (or a default), else the environment
    variable or the TOML file that holds it."""
    if field in given or field not in Settings.model_fields:
        return None
    if os.environ.get(_environment_name(field)) is not None:
        return f"environment variable {_environment_name(field)}"
    config_file = _config_file()
    if config_file is not None:
        try:
            keys = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return str(config_file)
        if field in keys:
            return str(config_file)
    return None


def _one_line(error: Exception, given: dict[str, Any] | None = None) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        parts = []
        for item in errors():
            location = tuple(str(part) for part in item.get("loc", ()))
            message = str(item.get("msg", "")).removeprefix("Value error, ")
            if item.get("type") == "extra_forbidden" and len(location) == 1:
                parts.append(_unknown_setting(location[0]))
                continue
            where = ".".join(location)
            field = location[0] if location else (re.match(r"[a-z_]+", message) or [""])[0]
            origin = _origin(field, given or {})
            text = f"{where}: {message}" if where else message
            parts.append(f"{text} (in {origin})" if origin else text)
        return "; ".join(parts)
    return describe(error)


def _unknown_setting(key: str) -> str:
    """An unknown top-level key of the TOML file, with the setting it most likely means."""
    close = difflib.get_close_matches(key, sorted(Settings.model_fields), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "see docs/settings.md for the known ones"
    return f"{_config_file() or 'the settings'}: unknown setting {key!r}; {hint}"
