"""Controlled substances, their salt and hydrate forms, and quantities: the arithmetic behind ``AnhydrousBase``.

Molar masses come from formulas and IUPAC standard atomic weights, so each conversion factor can be checked by hand.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "ATOMIC_WEIGHTS",
    "COUNT_UNITS",
    "MASS_UNITS",
    "VOLUME_UNITS",
    "Catalogue",
    "Dimension",
    "Form",
    "Quantity",
    "Substance",
    "anhydrous_base",
    "base_differs",
    "molar_mass",
    "parse_quantity",
    "plain",
]

# IUPAC conventional values of the standard atomic weights (the abridged table), in g/mol: the figures the
# pharmacopoeias print relative molecular masses from. Only the elements that drugs and their usual salts contain.
ATOMIC_WEIGHTS: Final[Mapping[str, Decimal]] = MappingProxyType(
    {
        "H": Decimal("1.008"),
        "Li": Decimal("6.94"),
        "B": Decimal("10.81"),
        "C": Decimal("12.011"),
        "N": Decimal("14.007"),
        "O": Decimal("15.999"),
        "F": Decimal("18.998"),
        "Na": Decimal("22.990"),
        "Mg": Decimal("24.305"),
        "Al": Decimal("26.982"),
        "Si": Decimal("28.085"),
        "P": Decimal("30.974"),
        "S": Decimal("32.06"),
        "Cl": Decimal("35.45"),
        "K": Decimal("39.098"),
        "Ca": Decimal("40.078"),
        "Fe": Decimal("55.845"),
        "Zn": Decimal("65.38"),
        "Br": Decimal("79.904"),
        "I": Decimal("126.90"),
    }
)

MASS_UNITS: Final[Mapping[str, Decimal]] = MappingProxyType(
    {"mg": Decimal("0.001"), "g": Decimal(1), "kg": Decimal(1000)}
)
VOLUME_UNITS: Final[Mapping[str, Decimal]] = MappingProxyType({"mL": Decimal("0.001"), "L": Decimal(1)})
COUNT_UNITS: Final[Mapping[str, Decimal]] = MappingProxyType({"unit": Decimal(1)})

Dimension = Literal["mass", "volume", "count"]
_DIMENSIONS: Final[Mapping[Dimension, Mapping[str, Decimal]]] = MappingProxyType(
    {"mass": MASS_UNITS, "volume": VOLUME_UNITS, "count": COUNT_UNITS}
)

# A factor is a ratio of molar masses whose atomic weights carry five or six significant figures: six decimals keep
# every digit that means something, and a fixed quantum makes the factor the same whatever the ambient decimal
# context. Half-even so that rounding does not lean one way across the catalogue.
_FACTOR_PLACES: Final = Decimal("0.000001")

_PACKAGED_CSV: Final = "data/substances.csv"
_COLUMNS: Final = ("inn", "regime", "base_formula", "form", "form_formula", "base_count", "incb_code", "source")
_REGIMES: Final = frozenset({"1961", "1971", "1988"})


# ---- formulas -------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"(?P<element>[A-Z][a-z]?)|(?P<number>\d+)|(?P<open>\()|(?P<close>\))")
_MULTIPLIER = re.compile(r"(?P<numerator>\d+)(?:/(?P<denominator>\d+))?")
_COUNT = re.compile(r"\d+")
_SEPARATORS: Final = ("·", ".")


def molar_mass(formula: str) -> Decimal:
    """The molar mass in g/mol of a formula such as ``C17H19NO3``, ``(C17H19NO3)2·H2SO4·5H2O`` or ``X·1/2H2O``."""
    if not formula:
        raise ValueError("empty formula")
    total = Decimal(0)
    for part in re.split("|".join(re.escape(s) for s in _SEPARATORS), formula):
        if not part:
            raise ValueError(f"empty part between separators in formula {formula!r}")
        total += _part_mass(part, formula)
    return total


def _part_mass(part: str, formula: str) -> Decimal:
    numerator, denominator, start = 1, 1, 0
    leading = _MULTIPLIER.match(part)
    if leading:
        numerator = int(leading["numerator"])
        denominator = int(leading["denominator"] or 1)
        start = leading.end()
        if numerator == 0 or denominator == 0:
            raise ValueError(f"a zero in the multiplier of formula {formula!r}")
    if start == len(part):
        raise ValueError(f"a multiplier with nothing to multiply in formula {formula!r}")
    mass, end = _group_mass(part, start, formula, nested=False)
    if end != len(part):
        raise ValueError(f"unexpected {part[end]!r} in formula {formula!r}")
    return mass * numerator / denominator


def _group_mass(part: str, position: int, formula: str, *, nested: bool) -> tuple[Decimal, int]:
    """Sum the atoms from ``position`` up to the matching ``)`` (nested) or the end of the part; return (mass, end)."""
    mass = Decimal(0)
    empty = True
    while position < len(part):
        token = _TOKEN.match(part, position)
        if token is None:
            raise ValueError(f"unexpected {part[position]!r} in formula {formula!r}")
        if token["close"]:
            if not nested:
                raise ValueError(f"unbalanced ')' in formula {formula!r}")
            if empty:
                raise ValueError(f"empty parentheses in formula {formula!r}")
            return mass, token.end()
        if token["number"]:
            raise ValueError(f"a count with no element or group before it in formula {formula!r}")
        if token["open"]:
            unit, position = _group_mass(part, token.end(), formula, nested=True)
        else:
            symbol = token["element"]
            if symbol not in ATOMIC_WEIGHTS:
                raise ValueError(f"unknown element {symbol!r} in formula {formula!r}")
            unit, position = ATOMIC_WEIGHTS[symbol], token.end()
        count = _COUNT.match(part, position)
        if count:
            if int(count[0]) == 0:
                raise ValueError(f"a count of zero in formula {formula!r}")
            unit, position = unit * int(count[0]), count.end()
        mass += unit
        empty = False
    if nested:
        raise ValueError(f"unbalanced '(' in formula {formula!r}")
    if empty:
        raise ValueError(f"no element in formula {formula!r}")
    return mass, position


# ---- the catalogue --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """A salt, ester or hydrate of a substance, as named in ``<Salt>``, with the share of base it holds."""

    name: str
    formula: str
    base_count: int  # base molecules in one formula unit: 2 for (C17H19NO3)2·H2SO4·5H2O
    molar_mass: Decimal
    factor: Decimal  # grams of anhydrous base in one gram of this form


@dataclass(frozen=True)
class Substance:
    """A controlled substance under its INN, with the treaty that controls it and the forms it is traded in."""

    inn: str
    regime: str  # "1961", "1971" or "1988"
    incb_code: str | None
    base_formula: str
    base_molar_mass: Decimal
    forms: Mapping[str, Form] = field(hash=False)  # by <Salt> name; the base itself is not among them


def _form_name(salt: str | None) -> str:
    """``<Salt>`` as the catalogue keys it: lower case, single spaces; empty for the base."""
    # <Salt> is free text, lower case by convention; folding case and spacing is safe, guessing synonyms is not.
    return " ".join((salt or "").split()).lower()


class Catalogue:
    """The substances the hub can convert to anhydrous base, keyed by INN."""

    def __init__(self, substances: Mapping[str, Substance]) -> None:
        self._substances: Mapping[str, Substance] = MappingProxyType(dict(substances))

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        """Read a catalogue CSV; without a path, the one packaged with the hub (read once, then shared)."""
        if path is None:
            return _packaged()
        return cls.parse(path.read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def parse(cls, text: str, source: str = "substances.csv") -> Catalogue:
        """Build a catalogue from the CSV text; a ValueError names the line that cannot be used."""
        return cls(_parse_catalogue(text, source))

    def substance(self, inn: str) -> Substance | None:
        return self._substances.get(inn.strip().lower())

    def factor(self, inn: str, form: str | None) -> Decimal | None:
        """Grams of anhydrous base per gram of ``inn`` in ``form``: 1 for the base, None when not in the catalogue."""
        substance = self.substance(inn)
        if substance is None:
            return None
        name = _form_name(form)
        if not name:
            return Decimal(1)
        found = substance.forms.get(name)
        return None if found is None else found.factor

    def __contains__(self, inn: object) -> bool:
        return isinstance(inn, str) and self.substance(inn) is not None

    def __iter__(self) -> Iterator[Substance]:
        return iter(self._substances.values())

    def __len__(self) -> int:
        return len(self._substances)


@functools.cache
def _packaged() -> Catalogue:
    text = resources.files(__package__ or "gateway.rules").joinpath(_PACKAGED_CSV).read_text(encoding="utf-8")
    return Catalogue.parse(text, source=_PACKAGED_CSV)


@dataclass
class _Draft:
    inn: str
    regime: str
    incb_code: str | None
    base_formula: str
    base_molar_mass: Decimal
    has_base_row: bool = False
    forms: dict[str, Form] = field(default_factory=dict)


def _parse_catalogue(text: str, source: str) -> dict[str, Substance]:
    # One record a line (no field spans lines), so each line is read alone and errors can name the file's line.
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip() and line.lstrip()[0] != "#"]
    header = next(csv.reader([lines[0][1]]), []) if lines else []
    missing = [c for c in _COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{source}: the header needs the columns {', '.join(_COLUMNS)}; missing {', '.join(missing)}")
    drafts: dict[str, _Draft] = {}
    for number, line in lines[1:]:
        try:
            values = next(csv.reader([line]))
            if len(values) != len(header):
                raise ValueError(f"{len(values)} fields where the header has {len(header)}")
            _add_row(drafts, {k: v.strip() for k, v in zip(header, values, strict=True)})
        except (ValueError, ArithmeticError, csv.Error) as exc:
            raise ValueError(f"{source}, line {number}: {exc}") from None
    for draft in drafts.values():
        if not draft.has_base_row:
            raise ValueError(f"{source}: {draft.inn} has no row for the base itself (an empty form)")
    return {
        inn: Substance(d.inn, d.regime, d.incb_code, d.base_formula, d.base_molar_mass, MappingProxyType(d.forms))
        for inn, d in drafts.items()
    }


def _add_row(drafts: dict[str, _Draft], row: Mapping[str, str]) -> None:
    inn, regime, base_formula = row["inn"].lower(), row["regime"], row["base_formula"]
    if not inn:
        raise ValueError("no INN")
    if regime not in _REGIMES:
        raise ValueError(f"{inn}: regime {regime!r} is not 1961, 1971 or 1988")
    incb_code = row["incb_code"] or None
    draft = drafts.get(inn)
    if draft is None:
        draft = drafts[inn] = _Draft(inn, regime, incb_code, base_formula, molar_mass(base_formula))
    elif (draft.regime, draft.incb_code, draft.base_formula) != (regime, incb_code, base_formula):
        raise ValueError(f"{inn}: regime, INCB code or base formula differ from the substance's earlier rows")
    name = _form_name(row["form"])
    if name in draft.forms or (not name and draft.has_base_row):
        raise ValueError(f"{inn}: form {name or '(base)'!r} listed twice")
    base_count = int(row["base_count"])
    if not name:
        if row["form_formula"] not in ("", base_formula) or base_count != 1:
            raise ValueError(f"{inn}: the base row must repeat the base formula with a base count of 1")
        draft.has_base_row = True
        return
    if base_count < 1:
        raise ValueError(f"{inn} {name}: base count {base_count} is not a positive integer")
    mass = molar_mass(row["form_formula"])
    factor = (base_count * draft.base_molar_mass / mass).quantize(_FACTOR_PLACES, rounding=ROUND_HALF_EVEN)
    if not Decimal(0) < factor <= Decimal(1):
        raise ValueError(f"{inn} {name}: factor {factor} is not in (0, 1]; check the formula and base count")
    draft.forms[name] = Form(name, row["form_formula"], base_count, mass, factor)


# ---- quantities -----------------------------------------------------------------------------------------------


def _dimension_of(unit: str) -> Dimension:
    for dimension, units in _DIMENSIONS.items():
        if unit in units:
            return dimension
    raise ValueError(
        f"unknown unit {unit!r}; expected one of {', '.join(u for us in _DIMENSIONS.values() for u in us)}"
    )


def _exact_product(a: Decimal, b: Decimal) -> Decimal:
    # A product never has more digits than its factors together: with that precision nothing is rounded,
    # whatever the ambient context says.
    with localcontext() as context:
        context.prec = max(len(a.as_tuple().digits) + len(b.as_tuple().digits), 1)
        return a * b


def _ratio(from_unit: str, to_unit: str, units: Mapping[str, Decimal]) -> Decimal:
    # Unit sizes are powers of ten, so their quotient is exact; an integral ratio keeps exponent 0 so results
    # print as 1000000, not 1.000E+6.
    ratio = units[from_unit] / units[to_unit]
    return ratio.quantize(Decimal(1)) if ratio == ratio.to_integral_value() else ratio


@dataclass(frozen=True)
class Quantity:
    """An amount with one of the contract's units (``mg``, ``g``, ``kg``, ``mL``, ``L``, ``unit``)."""

    amount: Decimal
    unit: str

    def __post_init__(self) -> None:
        _dimension_of(self.unit)
        if not self.amount.is_finite():
            raise ValueError(f"{self.amount} is not a finite quantity")

    @property
    def dimension(self) -> Dimension:
        return _dimension_of(self.unit)

    def to(self, unit: str) -> Quantity:
        """The same quantity in another unit of its dimension, exactly; a ValueError across dimensions."""
        if _dimension_of(unit) != self.dimension:
            raise ValueError(f"cannot convert {self.unit} ({self.dimension}) to {unit} ({_dimension_of(unit)})")
        if unit == self.unit:
            return self
        return Quantity(_exact_product(self.amount, _ratio(self.unit, unit, _DIMENSIONS[self.dimension])), unit)

    def in_grams(self) -> Decimal:
        """The amount in grams; a ValueError for a volume or a count."""
        if self.dimension != "mass":
            raise ValueError(f"{self.amount} {self.unit} is a {self.dimension}, not a mass")
        return self.to("g").amount


# xs:decimal's lexical space: no exponent, no NaN or INF, which Decimal() would otherwise accept.
_DECIMAL = re.compile(r"(?P<sign>[+-]?)(?:\d+(?:\.\d*)?|\.\d+)")


def parse_quantity(text: str, unit: str) -> Quantity:
    """Read an ``xs:decimal`` amount and its unit; exponents, NaN, infinities and negative amounts are refused."""
    stripped = text.strip()
    match = _DECIMAL.fullmatch(stripped)
    if match is None:
        raise ValueError(f"{text!r} is not a decimal quantity (digits and an optional point, no exponent)")
    if match["sign"] == "-":
        raise ValueError(f"{text!r} is negative; a quantity is zero or more")
    return Quantity(Decimal(stripped), unit)


# ---- the contract's checks ------------------------------------------------------------------------------------


def anhydrous_base(catalogue: Catalogue, inn: str, form: str | None, quantity: Quantity) -> Quantity | None:
    """``quantity`` of ``inn`` in ``form`` as anhydrous base, in the same unit; None when that cannot be computed."""
    if quantity.dimension != "mass":
        return None  # a volume or a count says nothing of the mass of substance without a concentration
    factor = catalogue.factor(inn, form)
    if factor is None:
        return None
    return Quantity(_exact_product(quantity.amount, factor), quantity.unit)


def base_differs(declared: Quantity, computed: Quantity, tolerance: Decimal = Decimal("0.01")) -> bool:
    """Whether the declared anhydrous base is more than ``tolerance`` (relative) away from the computed one."""
    declared_amount = Fraction(declared.to(computed.unit).amount)
    reference = Fraction(computed.amount)
    # In fractions, and multiplied rather than divided: exact whatever the digits, and defined for a computed zero.
    return abs(declared_amount - reference) > Fraction(tolerance) * reference


def plain(value: Decimal) -> str:
    """A decimal as a person writes it: no exponent, no trailing zeros."""
    return f"{value.normalize():f}"
