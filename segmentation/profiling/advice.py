"""What sets a segment apart, in words with its figures, and what to do about it.

Pure functions on one segment's rows of the long features table (see `segmentation.profiling`).

Advice, first match wins: the user's `[[recommendations]]` (then every matching `append`
rule), the marketers' advice of an RFM kind, else advice built from the declaration. A column
may declare which way is good for the business (`better = "higher"` or `"lower"`; the RFM
columns do): a segment's non-average features are then its strengths (on the good side), its
weaknesses (on the bad side), or, without `better`, traits it shares. The sentence keeps
strong segments loyal, sets out to raise or bring down what is weak, and fits products,
channels and messages to the traits. A declaration pack per kind of data would have to guess
what a column means from its name; `better` says it for any data set, in one word.
"""

from __future__ import annotations

import pandas as pd

from segmentation import display
from segmentation.dataset import Column, Dataset, Rule
from segmentation.profiling.levels import HIGH, LOW, share_word

CLOSE_TO_AVERAGE = "close to the average on every feature"
#: At most this many differences in "what sets it apart", and in each part of the advice.
SHOWN_DIFFERENCES = 6
ADVICE_FEATURES = 2


def _figures(row, column: Column, all_means: pd.Series) -> tuple[str, str]:
    """The segment's and the overall figure as text, with enough decimals to differ when they do."""
    if column.is_numeric:
        places = display.decimals(list(all_means))
        while places < display.MAX_DECIMALS and row.mean != row.overall_mean and \
                display.figure(row.mean, places) == display.figure(row.overall_mean, places):
            places += 1
        return display.figure(row.mean, places), display.figure(row.overall_mean, places)
    places = display.decimals([100 * row.mean, 100 * row.overall_mean], at_least=0, significant=0)
    return f"{100 * row.mean:.{places}f}%", f"{100 * row.overall_mean:.{places}f}%"


def describe_difference(column: Column, row, all_means: pd.Series) -> str:
    """One difference in words: "income 76% above average (79.4 vs 45.2)", "students 100% against 29% overall"."""
    mean, overall = _figures(row, column, all_means)
    if column.type in ("category", "boolean"):
        what = f"{column.label}: {row.category}" if column.type == "category" else column.label
        return f"{what} {mean} against {overall} overall"
    direction = "above" if row.mean > row.overall_mean else "below"
    if column.has_ratio and row.overall_mean > 0:
        change = 100 * abs(row.mean - row.overall_mean) / row.overall_mean
        places = 0 if change >= 1 else display.decimals([change], at_least=0, significant=1)
        return f"{column.label} {change:.{places}f}% {direction} average ({mean} vs {overall})"
    return f"{column.label} {direction} average ({mean} vs {overall})"


def _apart_rows(dataset: Dataset, features: list[str], segment_rows: pd.DataFrame):
    """(strength, column, row) of each non-average clustering feature row, strongest first.

    For a category of more than two values only the values the segment has more of, unless
    it has more of none (then the ones it lacks)."""
    items = []
    for name in features:
        column = dataset.column(name)
        rows = [row for row in segment_rows[segment_rows["feature"] == name].itertuples()
                if row.level in (HIGH, LOW)]
        if column.type == "category" and len(column.values or ()) != 2:
            rising = [row for row in rows if row.level == HIGH]
            rows = rising or rows
        items += [(float(row.strength), column, row) for row in rows]
    return sorted(items, key=lambda item: -item[0])


def distinguishing_features(
    dataset: Dataset, features: list[str], segment_rows: pd.DataFrame, long: pd.DataFrame | None = None
) -> str:
    """The clustering features whose level is not average, strongest first, with their figures.

    `long` (every segment's rows) sets the decimals of a number as the views show it."""
    long = segment_rows if long is None else long
    items = _apart_rows(dataset, features, segment_rows)[:SHOWN_DIFFERENCES]
    if not items:
        return CLOSE_TO_AVERAGE
    texts = []
    for _, column, row in items:
        same = long[(long["feature"] == column.name) & long["category"].isna()]["mean"] if column.is_numeric else None
        texts.append(describe_difference(column, row, same))
    return "; ".join(texts)


def _phrase(column: Column, row) -> str:
    """A feature's level inside a sentence: "high income", "older", "mostly students", "housing mostly rent"."""
    if column.type == "category":
        word = share_word(row.level, row.mean)
        return f"{column.label} {'often' if word == 'more' else word} {row.category}"
    if column.type == "boolean":
        return f"{share_word(row.level, row.mean)} {column.label}"
    return column.level_word(row.level)


def _actions(columns: list[Column]) -> str:
    """What working on the weaknesses means: "raise their income and credit limit", "bring the
    share of churners down"."""
    def what(column: Column) -> str:
        return f"the share of {column.label}" if column.type == "boolean" else column.label

    raise_ = [what(column) for column in columns if column.better == "higher"]
    lower = [what(column) for column in columns if column.better == "lower"]
    their = lambda items: _listed([item if item.startswith("the share") else f"their {item}" if index == 0 else item  # noqa: E731
                                   for index, item in enumerate(items)])
    verbs = ([f"raise {their(raise_)}"] if raise_ else []) + ([f"bring {their(lower)} down"] if lower else [])
    return " and ".join(verbs)


def _listed(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def built_advice(dataset: Dataset, features: list[str], segment_rows: pd.DataFrame) -> str:
    """Advice from the declaration alone: strengths, weaknesses and traits (see the module docstring)."""
    strengths, weaknesses, traits = [], [], []
    for _, column, row in _apart_rows(dataset, features, segment_rows):
        if column.better is None or column.type == "category":
            traits.append((column, row))
        elif (row.level == HIGH) == (column.better == "higher"):
            strengths.append((column, row))
        else:
            weaknesses.append((column, row))
    strong = _listed([_phrase(column, row) for column, row in strengths[:ADVICE_FEATURES]]) if strengths else ""
    weak = _listed([_phrase(column, row) for column, row in weaknesses[:ADVICE_FEATURES]]) if weaknesses else ""
    actions = _actions([column for column, _ in weaknesses[:ADVICE_FEATURES]])
    shared = _listed([_phrase(column, row) for column, row in traits[:ADVICE_FEATURES]]) if traits else ""
    if strengths and weaknesses:
        text = (f"Strong on {strong} but weak on {weak}: build on the first to {actions},"
                " with offers tied to what they already value.")
    elif strengths:
        text = (f"Valuable customers ({strong}): keep them loyal with rewards, early access and personal"
                " service rather than discounts.")
    elif weaknesses:
        text = f"Customers to win over ({weak}): find out why, then {actions} with targeted offers, reminders and service."
    elif traits:
        return (f"They stand out by {shared}: choose the products, channels and messages that fit this, and test"
                " offers on them before the other segments.")
    else:
        return "Close to the average customer: standard campaigns."
    if traits:
        text += f" Fit products, channels and messages to what they share: {shared}."
    return text


def matches(rule: Rule, dataset: Dataset, features: list[str], segment_rows: pd.DataFrame) -> bool:
    """Whether every condition of `rule` holds for the segment (on the run's features only)."""
    for feature, wanted in rule.when:
        if feature not in features:
            return False  # never advice about a feature the run did not use
        column = dataset.column(feature)
        rows = segment_rows[segment_rows["feature"] == feature]
        if column.type == "category":
            category = column.canonical_value(wanted) or wanted
            hit = rows[rows["category"] == category]
            if hit.empty or hit.iloc[0]["level"] != HIGH:
                return False
        elif rows.empty or rows.iloc[0]["level"] != wanted:
            return False
    return True


def recommendation(
    rules: tuple[Rule, ...], dataset: Dataset, features: list[str], segment_rows: pd.DataFrame,
    fallback: str | None = None,
) -> str:
    """First matching rule (then any matching `append` rules); else `fallback` (the RFM kind's
    advice); else `built_advice`."""
    main = next((rule.text for rule in rules if not rule.append and matches(rule, dataset, features, segment_rows)), None)
    main = main or fallback or built_advice(dataset, features, segment_rows)
    extras = [rule.text for rule in rules if rule.append and matches(rule, dataset, features, segment_rows)]
    return " ".join([main, *extras])

