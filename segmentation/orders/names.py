"""Segment names and advice in the words marketers use for recency, frequency and monetary value.

Pure functions. A segment's RFM kind follows from the levels of its clustering features
(low / average / high, as for any feature): recency from `recency_days` (low = recent) or
`r_score` (high = recent), frequency from `frequency` or `f_score`, monetary value from
`monetary` or `m_score`. The rule applies when the run clusters on recency and on frequency
or monetary value (a missing one counts as average). First match wins:

| recency | frequency | monetary | name |
| --- | --- | --- | --- |
| recent | high | high | Champions |
| recent or average | high | any | Loyal customers |
| lapsed | high | high | Can't lose them |
| lapsed | high, or any with high monetary | | At risk |
| recent or average | low or average | high | Big spenders |
| recent | low | any | New customers |
| recent | average | any | Potential loyalists |
| average | average | any | Need attention |
| average | low | any | About to sleep |
| lapsed | average | any | Hibernating |
| lapsed | low | any | Lost |

Two segments of one kind keep the kind's name followed by what tells them apart (their
feature-level name, itself unique), e.g. "Lost (lapsed, few orders, very low value)".
"""

from __future__ import annotations

RECENT, MIDDLE, LAPSED = "recent", "average", "lapsed"

#: (recency, frequency, monetary) patterns, first match wins; None matches any level
RULES: tuple[tuple[tuple[str, ...], tuple[str, ...] | None, tuple[str, ...] | None, str], ...] = (
    ((RECENT,), ("high",), ("high",), "Champions"),
    ((RECENT, MIDDLE), ("high",), None, "Loyal customers"),
    ((LAPSED,), ("high",), ("high",), "Can't lose them"),
    ((LAPSED,), ("high",), None, "At risk"),
    ((LAPSED,), None, ("high",), "At risk"),
    ((RECENT, MIDDLE), ("low", "average"), ("high",), "Big spenders"),
    ((RECENT,), ("low",), None, "New customers"),
    ((RECENT,), ("average",), None, "Potential loyalists"),
    ((MIDDLE,), ("average",), None, "Need attention"),
    ((MIDDLE,), ("low",), None, "About to sleep"),
    ((LAPSED,), ("average",), None, "Hibernating"),
    ((LAPSED,), ("low",), None, "Lost"),
)

RECOMMENDATIONS = {
    "Champions": "Reward them: loyalty perks, early access to new products, referral programme; no discounts needed.",
    "Loyal customers": "Keep them close: membership tiers, cross-sell and upsell of higher-value lines, ask for reviews.",
    "Can't lose them": "Win them back personally: a call or a tailored offer, find out what changed; worth a real incentive.",
    "At risk": "Win-back campaign: personalised reminders and a time-limited offer before they lapse for good.",
    "Big spenders": "Premium offers and personal service for their high-value purchases; invite them to buy more often.",
    "New customers": "Onboarding: a welcome series, a second-purchase incentive, help with getting started.",
    "Potential loyalists": "Offer membership or a loyalty programme; recommend products that fit their first orders.",
    "Need attention": "Limited-time offers based on their past purchases to bring the next order forward.",
    "About to sleep": "Reactivation: popular products and a modest discount before they drift away.",
    "Hibernating": "Low-cost reactivation: newsletters with relevant products; do not spend much on them.",
    "Lost": "Lowest priority: an occasional low-cost reactivation campaign, or leave them out of paid campaigns.",
}

_RECENCY = {"recency_days": {"low": RECENT, "average": MIDDLE, "high": LAPSED},
            "r_score": {"high": RECENT, "average": MIDDLE, "low": LAPSED}}
_FREQUENCY = ("frequency", "f_score")
_MONETARY = ("monetary", "m_score")


def applies(features: list[str]) -> bool:
    """Whether a run on `features` is named by the RFM rule: recency and frequency or monetary value."""
    has_recency = any(name in features for name in _RECENCY)
    return has_recency and any(name in features for name in (*_FREQUENCY, *_MONETARY))


def kind(levels: dict[str, str]) -> str | None:
    """The RFM name of a segment from its features' levels (feature -> low/average/high), or None."""
    recency = next((_RECENCY[name][levels[name]] for name in _RECENCY if name in levels), None)
    frequency = next((levels[name] for name in _FREQUENCY if name in levels), None)
    monetary = next((levels[name] for name in _MONETARY if name in levels), None)
    if recency is None or (frequency is None and monetary is None):
        return None
    frequency, monetary = frequency or "average", monetary or "average"
    for recencies, frequencies, monetaries, name in RULES:
        if (recency in recencies and (frequencies is None or frequency in frequencies)
                and (monetaries is None or monetary in monetaries)):
            return name
    return None


def unique_names(kinds: list[str], feature_names: list[str]) -> list[str]:
    """Each segment's kind, followed by its (unique) feature-level name when the kind repeats."""
    return [
        name if kinds.count(name) == 1 else f"{name} ({detail[:1].lower() + detail[1:]})"
        for name, detail in zip(kinds, feature_names)
    ]
