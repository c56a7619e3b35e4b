"""Estimates and assessments as the Board confirms them, read from the operator's CSV file."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal

from gateway.rules.substances import parse_quantity

KINDS = {"estimate": "estimate", "supplementary estimate": "supplementary", "supplementary": "supplementary",
         "assessment": "assessment"}  # fmt: skip
COLUMNS = ("country", "substance", "year", "quantity", "unit", "kind")


@dataclass(frozen=True)
class EstimateRow:
    country: str
    inn: str
    year: int
    grams: Decimal
    kind: str  # estimate, supplementary or assessment


class EstimatesFileError(ValueError):
    """A line of the estimates file that cannot be loaded, with its line number."""


def read_estimates(text: str) -> list[EstimateRow]:
    """Parse ``country,substance,year,quantity,unit,kind`` lines (quantity of anhydrous base; unit g, kg or mg)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise EstimatesFileError(
            f"line 1: the header needs the columns {', '.join(COLUMNS)}; missing {', '.join(missing)}"
        )
    rows = []
    for number, line in enumerate(reader, start=2):
        try:
            country = line["country"].strip()
            if len(country) != 2 or not country.isupper():
                raise ValueError(f"{country!r} is not an ISO 3166-1 alpha-2 code")
            kind = KINDS.get(line["kind"].strip().lower())
            if kind is None:
                raise ValueError(f"kind {line['kind']!r} is not estimate, supplementary estimate or assessment")
            grams = parse_quantity(line["quantity"], line["unit"].strip()).in_grams()
            rows.append(EstimateRow(country, line["substance"].strip().lower(), int(line["year"]), grams, kind))
        except (ValueError, ArithmeticError) as exc:
            raise EstimatesFileError(f"line {number}: {exc}") from None
    return rows
