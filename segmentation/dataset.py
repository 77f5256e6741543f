"""The one declaration of the data set: what a customer is, read by every stage.

A declaration names the export's customer id column and each column to keep: its SQL name,
the export header it comes `from`, its type (`number`, `whole`, `category`, `boolean`) and
optional label, unit, range, allowed values and transform. The import's row rules, the
feature matrix, the profiles, names and recommendations, the report and the views all read
it; no other module spells out column names. `MALL` is the built-in default, the five
columns of a mall's customer export.

Users write it in TOML (`[dataset]`, `[dataset.columns.NAME]`, `[[recommendations]]`); the
settings module validates it with `parse_dataset` and `parse_rules`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import unicodedata
from typing import Any, Literal

from segmentation import view_columns

ColumnType = Literal["number", "whole", "category", "boolean"]
COLUMN_TYPES: tuple[str, ...] = ("number", "whole", "category", "boolean")
LEVELS = ("low", "average", "high")

#: An SQL identifier users may give a column: it becomes a view column as it is.
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: Names the views use for their own columns; a declared column cannot take them.
RESERVED_NAMES = frozenset({
    "customer_id", "segment_id", "segment_name", "distance_to_centroid", "run_id", "published_at",
    "second_segment_id", "margin_to_second", "is_outlier", "is_active",
})
#: Largest bound a range may have: numbers beyond 1e15 are refused at import anyway.
MAX_BOUND = 1e15
#: Accepted spellings of booleans (lower case), and what they mean.
BOOLEAN_WORDS = {"yes": True, "y": True, "true": True, "t": True, "1": True,
                 "no": False, "n": False, "false": False, "f": False, "0": False}


def normalise_header(name: str) -> str:
    """Lower case with spaces, underscores, dashes, brackets, slashes and dots removed."""
    return re.sub(r"[\s_\-().\[\]/]+", "", name.strip().strip("'\"").lower())


@dataclasses.dataclass(frozen=True)
class Column:
    """One declared column of the data set.

    `name` is its SQL name in views and profiles; `source` the export header (or the column
    of a `source` table) it is read from, matched after `normalise_header`, as are `aliases`.
    Numbers may be bounded by `minimum` / `maximum`; categories by `values` (canonical
    spellings, matched case-insensitively, plus `value_aliases`: spelling -> value).
    `transform` "log" applies log(1 + x) before scaling (for skewed money and counts).
    `level_words` (low, average, high) name the levels in segment names; by default
    "low <label>" and so on. `better` says which way is good for the business ("higher" or
    "lower", numbers and booleans only): advice builds on a segment's strengths and works on
    its weaknesses.
    """

    name: str
    source: str
    type: ColumnType
    label: str
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str, ...] | None = None
    value_aliases: tuple[tuple[str, str], ...] = ()
    transform: Literal["none", "log"] = "none"
    aliases: tuple[str, ...] = ()
    level_words: tuple[str, str, str] | None = None
    better: Literal["higher", "lower"] | None = None

    @property
    def is_numeric(self) -> bool:
        return self.type in ("number", "whole")

    @property
    def axis_label(self) -> str:
        """The label with its unit, for axes and tables: "annual income (k$)"."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def level_word(self, level: str) -> str:
        """How a segment name says this feature's level: "high income", "younger"."""
        if self.level_words:
            return self.level_words[LEVELS.index(level)]
        return f"{level} {self.label}"

    @property
    def has_ratio(self) -> bool:
        """Whether "a quarter above the average" means something: the values cannot go below zero."""
        return self.transform == "log" or (self.minimum is not None and self.minimum >= 0)

    def canonical_value(self, text: str) -> str | None:
        """The declared spelling of category `text` (case-insensitive), or None if not allowed."""
        lowered = text.lower()
        for spelling, value in self.value_aliases:
            if spelling.lower() == lowered:
                return value
        if self.values is None:
            return text
        for value in self.values:
            if value.lower() == lowered:
                return value
        return None

    def range_text(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"{_number(self.minimum)}..{_number(self.maximum)}"
        if self.minimum is not None:
            return f">= {_number(self.minimum)}"
        if self.maximum is not None:
            return f"<= {_number(self.maximum)}"
        return "any"


@dataclasses.dataclass(frozen=True)
class Rule:
    """A recommendation: when every named feature is at the given level, say `text`.

    Levels are low / average / high for numbers and booleans; for a category the value
    names a category, which matches when its share in the segment is high. With `append`
    the text is added to whatever rule matched first (e.g. channel advice by age).
    """

    when: tuple[tuple[str, str], ...]
    text: str
    append: bool = False


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The declaration: id column, id type and the declared columns in order."""

    id_column: str
    id_type: Literal["whole", "text"]
    columns: tuple[Column, ...]
    id_aliases: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    default_features: tuple[str, ...] = ()
    #: columns computed by SQL (recency, frequency, ... from the orders), never imported
    derived: tuple[str, ...] = ()

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def imported(self) -> Dataset:
        """The part a customer export provides: the declaration without its derived columns."""
        if not self.derived:
            return self
        columns = tuple(column for column in self.columns if column.name not in self.derived)
        return dataclasses.replace(
            self, columns=columns, derived=(),
            default_features=tuple(name for name in self.default_features if name not in self.derived),
        )

    def fingerprint(self) -> str:
        """A short hash of everything that decides how values are read and stored."""
        text = json.dumps(
            [self.id_type, [[c.name, c.type, c.values, c.transform] for c in self.columns]], default=str
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """The declaration as JSON-able data (stored with each run)."""
        described = {
            "id_column": self.id_column,
            "id_type": self.id_type,
            "columns": [
                {"name": c.name, "from": c.source, "type": c.type, "label": c.label, "unit": c.unit,
                 "min": c.minimum, "max": c.maximum, "values": list(c.values) if c.values else None,
                 "transform": c.transform}
                for c in self.columns
            ],
        }
        if self.derived:  # absent otherwise, so that declarations stored before orders compare equal
            described["derived"] = list(self.derived)
        for spec, column in zip(described["columns"], self.columns):  # likewise absent unless declared
            if column.better:
                spec["better"] = column.better
        return described


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# --- the built-in default: a mall's customer export -------------------------------------------

_MALL_RULES = (
    # income x spending, first match wins (the notebook's quadrants and their middles)
    (("high", "high"), "Premium offers: VIP and loyalty programme, new premium lines, early access; protect their loyalty."),
    (("high", "average"), "Upsell: premium upgrades and bundles to lift spending towards their means."),
    (("high", "low"), "Win them over: personalised high-value offers and quality-led messaging to unlock untapped spending power."),
    (("average", "high"), "Loyalty rewards and cross-selling of complementary products."),
    (("average", "average"), "Standard campaigns: seasonal promotions and newsletters; test offers that move them up."),
    (("average", "low"), "Activation: targeted promotions and reminders to raise visit frequency."),
    (("low", "high"), "Value loyalty: reward points, bundles and flash sales on favourite items; avoid pushing credit."),
    (("low", "average"), "Value campaigns: everyday low prices, bundles and budget lines."),
    (("low", "low"), "Budget/value campaigns: discounts, coupons and value packs at low contact cost."),
)
_MALL_SPENDING_ONLY = {
    "high": "Loyalty and retention: rewards, exclusive offers and early access.",
    "average": "Standard campaigns: seasonal promotions; test offers that raise spending.",
    "low": "Activation: discounts and reminders to bring them back.",
}
_MALL_INCOME_ONLY = {
    "high": "Premium offers: higher-end lines and personal service.",
    "average": "Mid-range offers and seasonal promotions.",
    "low": "Budget/value campaigns: discounts and value packs.",
}

MALL = Dataset(
    id_column="CustomerID",
    id_type="whole",
    id_aliases=("customer", "custid", "id", "clientid", "customer_id"),
    columns=(
        Column("gender", "Gender", "category", "gender", values=("Female", "Male"),
               value_aliases=(("m", "Male"), ("f", "Female")), aliases=("genre", "sex")),
        Column("age", "Age", "whole", "age", unit="years", minimum=0, maximum=120,
               level_words=("younger", "middle-aged", "older")),
        Column("annual_income_k", "Annual Income (k$)", "number", "annual income", unit="k$", minimum=0,
               maximum=1e12, aliases=("annualincome", "income", "incomek", "annualincomek$"),
               level_words=("low income", "average income", "high income")),
        Column("spending_score", "Spending Score (1-100)", "whole", "spending score", unit="1-100",
               minimum=1, maximum=100, aliases=("spendingscore", "score"),
               level_words=("low spending", "average spending", "high spending")),
    ),
    rules=tuple(
        Rule((("annual_income_k", income), ("spending_score", spending)), text)
        for (income, spending), text in _MALL_RULES
    )
    + tuple(Rule((("spending_score", level),), text) for level, text in _MALL_SPENDING_ONLY.items())
    + tuple(Rule((("annual_income_k", level),), text) for level, text in _MALL_INCOME_ONLY.items())
    + (
        Rule((("age", "low"),), "Reach them through social media and mobile channels.", append=True),
        Rule((("age", "high"),), "Reach them through email, catalogue and in-store events.", append=True),
        Rule((("gender", "Female"),), "Choose products and creative for a mostly female audience.", append=True),
        Rule((("gender", "Male"),), "Choose products and creative for a mostly male audience.", append=True),
    ),
    default_features=("annual_income_k", "spending_score"),
)


# --- parsing what users write ------------------------------------------------------------------


def unknown_key(where: str, key: str, expected: set[str] | tuple[str, ...]) -> str:
    """The message for an unknown key: the likely one when there is one, else every key expected."""
    close = difflib.get_close_matches(key, sorted(expected), n=1)
    hint = f"did you mean {close[0]}?" if close else f"expected {', '.join(sorted(expected))}"
    return f"{where}: unknown key {key!r}; {hint}"


#: characters that reorder the text shown around them (bidirectional overrides and isolates)
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_CONTROL_NAMES = {"\x1b": "escape", "\x00": "NUL", "\t": "tab", "\n": "line break", "\r": "carriage return"}


def control_character(text: str) -> str | None:
    """The first control character of `text` (ESC, NUL, a line break...) as U+XXXX with its name, or None.

    Texts users write (labels, units, recommendations) are printed on terminals and in
    reports: an escape sequence in them would drive the terminal.
    """
    for character in text:
        if unicodedata.category(character) == "Cc" or character in _BIDI_CONTROLS:
            name = _CONTROL_NAMES.get(character) or unicodedata.name(character, "").lower()
            return f"U+{ord(character):04X}" + (f" ({name})" if name else "")
    return None


def _text(where: str, value: Any) -> str:
    """A text users wrote, refused when it holds a control character."""
    text = str(value)
    found = control_character(text)
    if found:
        raise ValueError(f"{where}: contains the control character {found}; remove it")
    return text


_COLUMN_KEYS = {"from", "type", "label", "unit", "min", "max", "values", "transform", "words", "better"}
_DATASET_KEYS = {"id_column", "id_type", "columns"}


def parse_dataset(raw: dict[str, Any] | None) -> Dataset:
    """The declaration from a TOML `[dataset]` table (None or empty: `MALL`).

    Raises ValueError with one readable sentence naming the offending key.
    """
    if not raw:
        return MALL
    unknown = set(raw) - _DATASET_KEYS
    if unknown:
        raise ValueError(unknown_key("dataset", sorted(unknown)[0], _DATASET_KEYS))
    id_column = raw.get("id_column")
    if not isinstance(id_column, str) or not id_column.strip():
        raise ValueError("dataset.id_column: name the export's customer id header, e.g. id_column = \"CustomerID\"")
    id_type = raw.get("id_type", "whole")
    if id_type not in ("whole", "text"):
        raise ValueError(f"dataset.id_type: {id_type!r} is not whole or text")
    columns_raw = raw.get("columns") or {}
    if not isinstance(columns_raw, dict) or not columns_raw:
        raise ValueError("dataset.columns: declare at least one column, e.g. [dataset.columns.income]")
    columns = []
    sources: dict[str, str] = {normalise_header(id_column): "id_column"}
    for name, spec in columns_raw.items():
        column = _parse_column(name, spec)
        key = normalise_header(column.source)
        if key in sources:
            raise ValueError(
                f"dataset.columns.{name}: header {column.source!r} is already read by {sources[key]}"
            )
        sources[key] = f"dataset.columns.{name}"
        columns.append(column)
    dataset = Dataset(id_column=_text("dataset.id_column", id_column.strip()), id_type=id_type, columns=tuple(columns))
    view_columns.check(dataset)
    return dataset


def _parse_column(name: str, spec: Any) -> Column:
    where = f"dataset.columns.{name}"
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(f"{where}: the name must be an SQL identifier (lower case letters, digits, _)")
    if name in RESERVED_NAMES:
        raise ValueError(f"{where}: {name!r} is a name the views use themselves; choose another")
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a table with from and type")
    unknown = set(spec) - _COLUMN_KEYS
    if unknown:
        raise ValueError(unknown_key(where, sorted(unknown)[0], _COLUMN_KEYS))
    column_type = spec.get("type")
    if column_type not in COLUMN_TYPES:
        raise ValueError(f"{where}.type: {column_type!r} is not one of {', '.join(COLUMN_TYPES)}")
    source = spec.get("from", name)
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"{where}.from: expected the export's header text")
    minimum, maximum = spec.get("min"), spec.get("max")
    for key, value in (("min", minimum), ("max", maximum)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{where}.{key}: expected a number")
        if value is not None and not (math.isfinite(value) and abs(value) <= MAX_BOUND):
            raise ValueError(f"{where}.{key}: {value!r} is not a finite number within ±1e15; give a number or leave it out")
        if value is not None and column_type not in ("number", "whole"):
            raise ValueError(f"{where}.{key}: only number and whole columns have a range")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise ValueError(f"{where}: min {minimum} is above max {maximum}")
    values = spec.get("values")
    if values is not None:
        if (column_type != "category" or not isinstance(values, list) or not values
                or not all(isinstance(v, str) and v.strip() for v in values)):
            raise ValueError(f"{where}.values: a list of category names, for type = \"category\" only")
        values = tuple(_text(f"{where}.values", value.strip()) for value in values)
        seen: dict[str, str] = {}
        for value in values:
            if value.lower() in seen:
                raise ValueError(
                    f"{where}.values: {value!r} repeats {seen[value.lower()]!r} (values are matched in any case); list it once"
                )
            seen[value.lower()] = value
    transform = spec.get("transform", "none")
    if transform not in ("none", "log"):
        raise ValueError(f"{where}.transform: {transform!r} is not none or log")
    if transform == "log" and column_type not in ("number", "whole"):
        raise ValueError(f"{where}.transform: log applies to number and whole columns only")
    if transform == "log" and (minimum is None or minimum < 0):
        raise ValueError(f"{where}.transform: log needs min = 0 (or above), so that every value has a logarithm")
    label = _text(f"{where}.label", spec.get("label") or name.replace("_", " "))
    unit = spec.get("unit")
    better = spec.get("better")
    if better is not None and better not in ("higher", "lower"):
        raise ValueError(f"{where}.better: {better!r} is not \"higher\" or \"lower\" (which way is good for the business)")
    if better is not None and column_type == "category":
        raise ValueError(f"{where}.better: only number, whole and boolean columns have a direction; not a category")
    return Column(
        name=name, source=_text(f"{where}.from", source.strip()), type=column_type, label=label,
        unit=None if unit is None else _text(f"{where}.unit", unit),
        minimum=None if minimum is None else float(minimum), maximum=None if maximum is None else float(maximum),
        values=values, transform=transform, level_words=_parse_words(where, spec.get("words"), column_type, label),
        better=better,
    )


def _parse_words(where: str, words: Any, column_type: str, label: str) -> tuple[str, str, str] | None:
    """`words = ["younger", "older"]` (low end, high end) or three words with the middle:
    how segment names say a number column's levels."""
    if words is None:
        return None
    if column_type not in ("number", "whole"):
        raise ValueError(f"{where}.words: only number and whole columns have low and high ends")
    if (not isinstance(words, list) or len(words) not in (2, 3)
            or not all(isinstance(word, str) and word.strip() for word in words)):
        raise ValueError(
            f"{where}.words: two phrases for the low and the high end, e.g. words = [\"younger\", \"older\"]"
            " (or three, with the middle one)"
        )
    words = [_text(f"{where}.words", word.strip()) for word in words]
    low, middle, high = (words[0], f"average {label}", words[1]) if len(words) == 2 else words
    if len({low, middle, high}) < 3:
        raise ValueError(f"{where}.words: the phrases must differ, or segment names could not tell the levels apart")
    return low, middle, high


def parse_rules(raw: Any) -> tuple[Rule, ...]:
    """`[[recommendations]]` entries: {when = {feature = level or category}, text = "..."}."""
    if not raw:
        return ()
    if not isinstance(raw, list):
        raise ValueError("recommendations: expected a list of [[recommendations]] tables")
    rules = []
    for position, entry in enumerate(raw, start=1):
        where = f"recommendations[{position}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("when"), dict) or not entry["when"]:
            raise ValueError(f"{where}: expected when = {{feature = \"high\", ...}} and text = \"...\"")
        if not isinstance(entry.get("text"), str) or not entry["text"].strip():
            raise ValueError(f"{where}.text: the recommendation, as a sentence")
        unknown = set(entry) - {"when", "text", "append"}
        if unknown:
            raise ValueError(unknown_key(where, sorted(unknown)[0], ("when", "text", "append")))
        when = tuple((str(feature), str(level)) for feature, level in entry["when"].items())
        text = _text(f"{where}.text", entry["text"].strip())
        rules.append(Rule(when=when, text=text, append=bool(entry.get("append", False))))
    return tuple(rules)


def check_rules(dataset: Dataset, rules: tuple[Rule, ...]) -> None:
    """Every rule names declared columns and levels that exist (ValueError otherwise)."""
    for position, rule in enumerate(rules, start=1):
        for feature, level in rule.when:
            try:
                column = dataset.column(feature)
            except KeyError:
                raise ValueError(
                    f"recommendations[{position}]: {feature!r} is not a declared column; declared: {', '.join(dataset.names)}"
                ) from None
            if column.type == "category":
                if column.values is not None and column.canonical_value(level) is None:
                    raise ValueError(
                        f"recommendations[{position}]: {feature} has no category {level!r}; values: {', '.join(column.values)}"
                    )
            elif level not in LEVELS:
                raise ValueError(f"recommendations[{position}]: {feature} = {level!r}; expected low, average or high")


def from_description(description: dict[str, Any] | None) -> Dataset:
    """The declaration stored with a run (`Dataset.describe()`), for readers of old runs.

    None (a run from before declarations existed) gives `MALL`.
    """
    if not description:
        return MALL
    if description == MALL.describe():
        return MALL
    columns = tuple(
        Column(
            name=spec["name"], source=spec.get("from") or spec["name"], type=spec["type"],
            label=spec.get("label") or spec["name"].replace("_", " "), unit=spec.get("unit"),
            minimum=spec.get("min"), maximum=spec.get("max"),
            values=tuple(spec["values"]) if spec.get("values") else None, transform=spec.get("transform") or "none",
            better=spec.get("better"),
        )
        for spec in description.get("columns", [])
    )
    return Dataset(id_column=description.get("id_column", "id"), id_type=description.get("id_type", "whole"),
                   columns=columns, derived=tuple(description.get("derived") or ()))
