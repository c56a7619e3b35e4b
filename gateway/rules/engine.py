"""Section 7: the hub's checks on the business documents, as one pure function per document type."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from gateway.errors import (
    AuthorizationExpired,
    AuthorizationMismatch,
    EstimateExceeded,
    QuantityExceedsAuthorization,
    SchemaInvalid,
    UnknownReference,
    WarningCode,
)
from gateway.ledger.model import Finding
from gateway.rules.documents import (
    EXPORT,
    IMPORT,
    PRE_EXPORT,
    Authorization,
    Cancellation,
    Clarification,
    Document,
    Endorsement,
    Item,
    PreExportResponse,
)
from gateway.rules.record import (
    CancelAuthorization,
    Effect,
    FileAuthorization,
    FileClarification,
    FileEndorsement,
    FileResponse,
    Notice,
    OnFile,
    TradeView,
)
from gateway.rules.substances import Catalogue, anhydrous_base, base_differs, plain

# Estimates (1961 Convention, art. 19) and assessments (1971, ECOSOC resolutions) cover these regimes.
ESTIMATED_REGIMES = frozenset({"1961", "1971"})


@dataclass(frozen=True)
class RuleOutcome:
    warnings: tuple[Finding, ...] = ()
    notices: tuple[Notice, ...] = ()
    effects: tuple[Effect, ...] = ()


@dataclass(frozen=True)
class Parties:
    """Who sent the document and to whom, as verified by the hub."""

    sender: str
    recipient: str


@dataclass
class _Findings:
    warnings: list[Finding] = field(default_factory=list)

    def warn(self, code: WarningCode, text: str) -> None:
        self.warnings.append(Finding(code, text))


def evaluate(
    document: Document, parties: Parties, trade: TradeView, catalogue: Catalogue, now: datetime
) -> RuleOutcome:
    """Check one accepted-so-far document against the trade record; raise the contract's refusal or return."""
    if isinstance(document, Authorization):
        return _authorization(document, parties, trade, catalogue, now)
    if isinstance(document, Endorsement):
        return _endorsement(document, parties, trade, catalogue)
    if isinstance(document, Cancellation):
        return _cancellation(document, parties, trade)
    if isinstance(document, Clarification):
        return _clarification(document, trade)
    return _response(document, parties, trade)


def _grams(quantity_base: Item) -> Decimal:
    return quantity_base.anhydrous_base.in_grams()


def _authorization(
    document: Authorization, parties: Parties, trade: TradeView, catalogue: Catalogue, now: datetime
) -> RuleOutcome:
    found = _Findings()
    if document.issuing_country != parties.sender:
        raise AuthorizationMismatch(
            f"{document.type} {document.number} is issued by {document.issuing_country} but sent by {parties.sender}"
        )
    existing = trade.on_file(document.reference)
    if existing is not None:
        raise AuthorizationMismatch(
            f"{document.type} {document.number} of {document.issuing_country} is already on file "
            f"(message {existing.message_id}); a new authorization needs a new number"
        )
    if document.valid_until is not None and document.valid_until < document.issue_date:
        raise AuthorizationExpired(f"{document.number} is valid until {document.valid_until}, before it was issued")
    _check_anhydrous_base(document.items, catalogue, found)
    import_on_file = None
    if document.type == EXPORT and document.import_ref is not None:
        import_on_file = trade.on_file(document.import_ref)
        if import_on_file is None:
            found.warn(
                WarningCode.REFERENCE_NOT_ON_FILE,
                f"Import authorization {document.import_ref.number} is not on file; checked as a paper authorization.",
            )
        else:
            _match_export(document, import_on_file, trade)
    # An import counts against the importing country's estimate when it is authorized; an export counts
    # only when no import authorization on file already did.
    counts = document.type == IMPORT or (document.type == EXPORT and import_on_file is None)
    if counts:
        _check_estimates(document, trade, found)
    return RuleOutcome(warnings=tuple(found.warnings), effects=(FileAuthorization(document, counts),))


def _check_anhydrous_base(items: tuple[Item, ...], catalogue: Catalogue, found: _Findings) -> None:
    for item in items:
        computed = anhydrous_base(catalogue, item.inn, item.salt, item.quantity)
        declared = item.anhydrous_base
        if computed is None or declared.dimension != computed.dimension:
            continue  # a substance or form the catalogue does not know: nothing to compare with
        if base_differs(declared, computed):
            form = f"{item.inn} {item.salt}" if item.salt else item.inn
            found.warn(
                WarningCode.ANHYDROUS_BASE_DIFFERS,
                f"item {item.line}: {item.quantity.amount} {item.quantity.unit} of {form} is "
                f"{computed.to(declared.unit).amount:.6g} {declared.unit} of anhydrous base by the hub's "
                f"computation, not {declared.amount} {declared.unit}",
            )


def _match_export(export: Authorization, on_file: OnFile, trade: TradeView) -> None:
    authorization = on_file.authorization
    ref = export.import_ref
    assert ref is not None
    label = f"import authorization {authorization.number}"
    if on_file.cancelled:
        raise AuthorizationMismatch(f"{label} has been cancelled")
    if ref.issue_date != authorization.issue_date:
        raise AuthorizationMismatch(f"{label} was issued on {authorization.issue_date}, not {ref.issue_date}")
    if (export.issuing_country, export.importer.country) != (
        authorization.exporter.country,
        authorization.importer.country,
    ):
        raise AuthorizationMismatch(
            f"{label} authorizes imports into {authorization.importer.country} from "
            f"{authorization.exporter.country}; this export is from {export.issuing_country} "
            f"to {export.importer.country}"
        )
    for role, ours, theirs in (
        ("importer", export.importer, authorization.importer),
        ("exporter", export.exporter, authorization.exporter),
    ):
        if ours.name.casefold() != theirs.name.casefold() or ours.country != theirs.country:
            raise AuthorizationMismatch(f"the {role} is {ours.name!r}; {label} names {theirs.name!r}")
    valid_until = authorization.valid_until
    if export.issue_date < authorization.issue_date or (valid_until and export.issue_date > valid_until):
        raise AuthorizationExpired(
            f"issued on {export.issue_date}, outside the validity of {label} "
            f"({authorization.issue_date} to {valid_until})"
        )
    if valid_until and export.valid_until and export.valid_until > valid_until:
        raise AuthorizationExpired(f"valid until {export.valid_until}, after {label} expires on {valid_until}")
    authorized = _totals(authorization.items)
    already = trade.exported_against(authorization.reference)
    for inn, grams in _totals(export.items).items():
        if inn not in authorized:
            raise AuthorizationMismatch(f"{inn} is not among the substances of {label}")
        used = already.get(inn, Decimal(0))
        remaining = authorized[inn] - used
        if grams > remaining:
            raise QuantityExceedsAuthorization(
                f"{inn}: {plain(grams)} g of anhydrous base exceeds what {label} still allows "
                f"({plain(remaining)} g of {plain(authorized[inn])} g; {plain(used)} g already exported)"
            )


def _totals(items: tuple[Item, ...]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for item in items:
        totals[item.inn] = totals.get(item.inn, Decimal(0)) + _grams(item)
    return totals


def _check_estimates(document: Authorization, trade: TradeView, found: _Findings) -> None:
    country = document.importer.country
    year = document.issue_date.year
    regimes = {item.inn: item.regime for item in document.items}
    # Exports filed earlier against this import authorization, as a paper one, stop counting once it is on file.
    superseded = trade.exported_against(document.reference) if document.type == IMPORT else {}
    for inn, grams in _totals(document.items).items():
        if regimes[inn] not in ESTIMATED_REGIMES:
            continue
        figure = trade.estimate(country, inn, year)
        if figure is None:
            found.warn(WarningCode.NO_ESTIMATE_ON_FILE, f"no estimate or assessment of {country} for {inn} in {year}")
            continue
        total = trade.counted_against_estimate(country, inn, year) - superseded.get(inn, Decimal(0)) + grams
        if total > figure:
            raise EstimateExceeded(
                f"{inn}: this authorization brings {country}'s authorized imports for {year} to {plain(total)} g of "
                f"anhydrous base, {plain(total - figure)} g above the confirmed figure of {plain(figure)} g"
            )


def _endorsement(document: Endorsement, parties: Parties, trade: TradeView, catalogue: Catalogue) -> RuleOutcome:
    on_file = trade.on_file(document.export_ref)
    if on_file is None:
        raise UnknownReference(f"{document.export_ref} is not on file")
    if on_file.cancelled:
        raise AuthorizationMismatch(f"export authorization {document.export_ref.number} has been cancelled")
    export = on_file.authorization
    if parties.sender != export.importer.country or parties.recipient != export.issuing_country:
        raise AuthorizationMismatch(
            f"an endorsement of {export.number} goes from {export.importer.country} to {export.issuing_country}"
        )
    lines = {item.line: item for item in export.items}
    discrepancies = []
    for endorsed in document.items:
        item = lines.get(endorsed.line)
        if item is None or item.inn != endorsed.inn:
            raise AuthorizationMismatch(f"line {endorsed.line} ({endorsed.inn}) is not an item of {export.number}")
        authorized = item.quantity.to(endorsed.quantity.unit).amount
        if endorsed.quantity.amount != authorized:
            discrepancies.append(
                f"line {endorsed.line}, {endorsed.inn}: {plain(endorsed.quantity.amount)} {endorsed.quantity.unit} "
                f"imported, {plain(authorized)} {endorsed.quantity.unit} authorized"
            )
    missing = set(lines) - {e.line for e in document.items}
    discrepancies += [f"line {line}, {lines[line].inn}: nothing imported" for line in sorted(missing)]
    warnings: tuple[Finding, ...] = ()
    notices: tuple[Notice, ...] = ()
    if discrepancies:
        text = "; ".join(discrepancies)
        warnings = (Finding(WarningCode.QUANTITY_DISCREPANCY, text),)
        notices = (
            Notice(
                to=export.issuing_country,
                kind="QUANTITY_DISCREPANCY",
                about=export.reference,
                text=f"{export.importer.country} endorsed export authorization {export.number} with quantities "
                f"that differ from those authorized: {text}",
            ),
        )
    return RuleOutcome(warnings, notices, (FileEndorsement(document, tuple(discrepancies)),))


def _cancellation(document: Cancellation, parties: Parties, trade: TradeView) -> RuleOutcome:
    on_file = trade.on_file(document.ref)
    if on_file is None:
        raise UnknownReference(f"{document.ref} is not on file")
    if on_file.sender != parties.sender:
        raise AuthorizationMismatch(f"only {on_file.sender}, its issuer, can cancel {document.ref.number}")
    if on_file.cancelled:
        raise AuthorizationMismatch(f"{document.ref.number} is already cancelled")
    return RuleOutcome(effects=(CancelAuthorization(document),))


def _clarification(document: Clarification, trade: TradeView) -> RuleOutcome:
    warnings: tuple[Finding, ...] = ()
    if trade.on_file(document.ref) is None:
        warnings = (Finding(WarningCode.REFERENCE_NOT_ON_FILE, f"{document.ref} is not on file"),)
    return RuleOutcome(warnings=warnings, effects=(FileClarification(document),))


def _response(document: PreExportResponse, parties: Parties, trade: TradeView) -> RuleOutcome:
    on_file = trade.on_file(document.ref)
    if on_file is None or on_file.authorization.type != PRE_EXPORT:
        raise UnknownReference(f"{document.ref} is not on file")
    if on_file.recipient != parties.sender:
        raise AuthorizationMismatch(f"{document.ref.number} was notified to {on_file.recipient}, not {parties.sender}")
    if document.decision in ("OBJECTION", "MORE_INFORMATION") and not document.reason:
        raise SchemaInvalid(f"a {document.decision} response needs a Reason")
    return RuleOutcome(effects=(FileResponse(document),))
