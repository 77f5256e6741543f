"""Levels and words of one feature in one segment, judged on the figures published beside them.

Pure functions. A segment's figure is the one the views publish: the arithmetic mean of a
number (its `index` is mean / overall mean x 100), the share of a category value or of a
boolean's true values. It is compared with the same figure over all customers:

- `strength`: how far apart the two are, the larger of
  - the difference in standard deviations of all customers (|z|), and
  - for figures that cannot go below zero (shares; numbers declared with min >= 0 or `log`):
    the ratio, on a scale where a quarter above or a fifth below (index 125 or 80) counts
    0.5 and twice or half 1.5; a share must also be 5 points away for its ratio to count,
    and a boolean's ratio counts both ways (99% against 90% is 1% against 10% not-true);
- `level`: high when the segment's figure is above the overall one and the strength is at
  least 0.5, low when below, else average. So "high" is always above the all-customer
  figure, "low" always below, and a share of 0% against 10% is low, never average;
- "very" in a name from a strength of 1.5 (1.5 standard deviations, or twice or half).

Words: a number says its level ("high income", or the declaration's `words`, "older"); a
boolean "mostly students" only for a majority of the segment, else "more", "fewer", "few" or
"no students"; a category always with its column ("housing: mostly rent", "contract: often
one year", "housing: no owner").
"""

from __future__ import annotations

import math

from segmentation.dataset import Column

LOW, AVERAGE, HIGH = "low", "average", "high"
#: Strength from which a figure is high or low (half a standard deviation, or index 125 / 80).
LEVEL_THRESHOLD = 0.5
#: Strength from which a name says "very" (1.5 standard deviations, or twice / half).
VERY = 1.5
#: The ratio that counts LEVEL_THRESHOLD: a quarter above the all-customer figure.
RATIO = 1.25
#: A share's ratio counts only this far from the overall share (5 percentage points).
SHARE_POINTS = 0.05
#: Strength of a figure of 0 against a positive overall one (the ratio is infinite).
STRONGEST = 3.0


def strength(mean: float, overall: float, spread: float, *, ratio: bool, share: bool = False) -> float:
    """How far a segment's figure `mean` is from the all-customer figure `overall` (see the
    module docstring); `spread` is the standard deviation over all customers. NaN if unknown."""
    if mean is None or overall is None or math.isnan(mean) or math.isnan(overall):
        return math.nan
    result = abs(mean - overall) / spread if spread and not math.isnan(spread) else 0.0
    if ratio and overall > 0 and (not share or abs(mean - overall) >= SHARE_POINTS):
        by_ratio = STRONGEST if mean <= 0 else LEVEL_THRESHOLD * abs(math.log(mean / overall)) / math.log(RATIO)
        result = max(result, by_ratio)
    return min(result, STRONGEST) if mean != overall else 0.0


def share_strength(share: float, overall: float, *, both_ways: bool) -> float:
    """`strength` of a share (0..1); `both_ways` also weighs the complement (a boolean's false share)."""
    spread = math.sqrt(overall * (1 - overall)) if overall is not None and not math.isnan(overall) else math.nan
    result = strength(share, overall, spread, ratio=True, share=True)
    if both_ways and not math.isnan(result):
        result = max(result, strength(1 - share, 1 - overall, spread, ratio=True, share=True))
    return result


def level(mean: float, overall: float, how_strong: float) -> str | None:
    """low / average / high of a figure against the all-customer figure, None if unknown."""
    if how_strong is None or math.isnan(how_strong):
        return None
    if how_strong < LEVEL_THRESHOLD or mean == overall:
        return AVERAGE
    return HIGH if mean > overall else LOW


def share_word(level_name: str, share: float) -> str:
    """How a name quantifies a share: mostly (a majority) or more when high; no, few or fewer when low."""
    if level_name == HIGH:
        return "mostly" if share > 0.5 else "more"
    if level_name == LOW:
        return "no" if share == 0 else "few" if share < 0.25 else "fewer"
    return "some"


def feature_word(column: Column, level_name: str, share: float | None = None, category: str | None = None,
                 very: bool = False) -> str:
    """How a segment name says one feature: "high income", "older", "mostly students",
    "housing: mostly rent", "mixed housing" (a category at no level), "very high income"."""
    if column.type == "category":
        if level_name == AVERAGE or category is None:
            return f"mixed {column.label}"
        word = "often" if level_name == HIGH and share <= 0.5 else share_word(level_name, share)
        if level_name == LOW and word == "fewer":
            word = "rarely"
        return f"{column.label}: {word} {category}"
    if column.type == "boolean":
        return f"{share_word(level_name, share)} {column.label}"
    word = column.level_word(level_name)
    if very and level_name != AVERAGE and word.startswith((HIGH, LOW)):
        return f"very {word}"
    return word
