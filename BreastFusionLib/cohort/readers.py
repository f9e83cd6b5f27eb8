"""Radiologists' scores in a manifest: ``reader_*`` columns holding BI-RADS categories or probabilities.

A column is read as BI-RADS when any of its values has a letter (``4a``) or is a whole number
above 1 (categories 1-6, with 4a/4b/4c as 4.25/4.5/4.75 so that they rank); otherwise as
malignancy probabilities in [0, 1]. The operating point is BI-RADS >= 4 (biopsy recommended) or
probability >= 0.5.
"""

from __future__ import annotations

BIRADS = {"1": 1.0, "2": 2.0, "3": 3.0, "4": 4.0, "4a": 4.25, "4b": 4.5, "4c": 4.75, "5": 5.0, "6": 6.0}
BIRADS_POSITIVE = 4.0
PROBABILITY_POSITIVE = 0.5


def reader_columns(columns: list[str]) -> list[str]:
    """The manifest columns holding reader scores."""
    return [column for column in columns if column.startswith("reader_")]


def is_birads_column(values: list[str]) -> bool:
    """True when the non-empty values of a reader column are BI-RADS categories, not probabilities."""
    for value in values:
        text = value.strip().lower()
        if not text:
            continue
        if any(character.isalpha() for character in text) or (text.isdigit() and int(text) > 1):
            return True
    return False


def parse_reader_score(text: str, birads: bool) -> float:
    """A reader score as a number that ranks cases; ``ValueError`` says what is accepted."""
    text = text.strip().lower()
    if birads:
        if text not in BIRADS:
            raise ValueError(f"not a BI-RADS category; use one of {', '.join(BIRADS)}")
        return BIRADS[text]
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("a malignancy probability must be in [0, 1]")
    return value


def reader_threshold(birads: bool) -> float:
    """The score at and above which a reader's call counts as malignant."""
    return BIRADS_POSITIVE if birads else PROBABILITY_POSITIVE
