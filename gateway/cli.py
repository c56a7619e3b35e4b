"""The ``i2es`` command: set up the hub, manage participants, run the hub, send, receive, verify."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from lxml import etree

from certs.authority import CsrRefused
from certs.keys import common_name, pem
from certs.trust import NoRevocations, RevocationList, TrustStore
from gateway.admin import AdminError, add_participant, initialize, revoke_participant, vhost_url
from gateway.envelope import Header, build_envelope, new_message_id, read_header
from gateway.errors import GatewayError
from gateway.home import Home
from gateway.ledger.model import LedgerEntry
from gateway.ledger.store import LedgerMissing, SqlLedger, ledger_for
from gateway.reading import DOCUMENT_NS, DSIG_NS, ENVELOPE_NS, ReadingPolicy, parse_xml, read_message
from gateway.registry import REVOCATION_REASONS
from gateway.security import default_actor
from gateway.settings import Settings

EXIT_REJECTED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A one-line error for the user; the command exits with status 2."""


def _now() -> datetime:
    return datetime.now(UTC)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


# --- init, ca, participant ------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    report = initialize(
        settings, _now(), ca_key_type=args.ca_key, root_key_out=Path(args.root_key_out) if args.root_key_out else None
    )
    if args.json:
        _print_json(report.__dict__)
    else:
        print(f"hub state in {report.home}")
        print(f"certificate authority: {'created' if report.created_ca else 'kept'}")
        print(f"hub signing certificate: {'created' if report.created_hub_certificate else 'kept'}")
        print(f"broker topology declared in vhost {report.vhost!r}")
    return 0


def cmd_ca_show(args: argparse.Namespace, settings: Settings) -> int:
    home = _initialized_home(settings)
    anchors = home.anchors()
    if args.json:
        _print_json([_certificate_summary(c) for c in anchors])
    else:
        sys.stdout.write("".join(pem(c) for c in anchors))
    return 0


def _certificate_summary(certificate: Any) -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes

    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": f"{certificate.serial_number:x}",
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "sha256": certificate.fingerprint(hashes.SHA256()).hex(),
    }


def _initialized_home(settings: Settings) -> Home:
    home = Home(settings.home)
    if not home.is_initialized():
        raise CommandError(f"the hub in {home.root} is not set up: run `i2es init` first")
    return home


def cmd_participant_add(args: argparse.Namespace, settings: Settings) -> int:
    if (args.csr is None) != (args.cert_out is None):
        raise CommandError("--csr and --cert-out go together")
    csr = Path(args.csr).read_bytes() if args.csr else None
    try:
        report = add_participant(
            settings,
            args.code,
            args.name,
            _now(),
            contact=args.contact,
            csr=csr,
            cert_out=Path(args.cert_out) if args.cert_out else None,
            password=args.password,
        )
    except CsrRefused as exc:
        raise CommandError(f"certificate request refused: {exc}") from None
    summary = {
        "code": report.code,
        "certificate": str(report.certificate_path),
        "serial": f"{report.certificate.serial_number:x}",
        "not_after": report.certificate.not_valid_after_utc.isoformat(),
        "key": str(report.key_path) if report.key_path else None,
        "broker_user": report.code,
        "broker_password_file": str(report.password_path) if report.password_path else None,
        "deliver_queue": f"i2es.deliver.{report.code}",
    }
    if args.json:
        _print_json(summary)
    else:
        print(f"participant {report.code} registered")
        for key, value in summary.items():
            if value is not None and key != "code":
                print(f"  {key}: {value}")
    return 0


def cmd_participant_revoke(args: argparse.Namespace, settings: Settings) -> int:
    count = revoke_participant(settings, args.code, _now())
    if args.json:
        _print_json({"code": args.code, "revoked": count})
    else:
        print(f"revoked {count} certificate(s) of {args.code}; its later messages are refused")
    return 0


def cmd_participant_list(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.registry import Registry

    registry = Registry(settings.ledger_path)
    try:
        rows: list[dict[str, Any]] = [
            {
                "code": p.code,
                "name": p.name,
                "certificates": [
                    {
                        "serial": c.serial,
                        "not_after": c.not_after.isoformat(),
                        "revoked": c.revoked_at is not None,
                    }
                    for c in registry.certificates(p.code)
                ],
            }
            for p in registry.participants()
        ]
    finally:
        registry.close()
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            active = sum(1 for c in row["certificates"] if not c["revoked"])
            print(f"{row['code']}  {row['name']}  ({active} valid certificate(s))")
    return 0


# --- gateway run --------------------------------------------------------------------------


def cmd_gateway_run(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.broker.service import connect
    from gateway.logs import configure_logging
    from gateway.runtime import HubParts

    configure_logging(settings.log_format)
    parts = HubParts(settings)

    async def run() -> None:
        connection = await connect(vhost_url(settings), "i2es-hub")
        service = parts.service(connection)
        service.install_signal_handlers()
        try:
            await service.run()
        finally:
            await connection.close()

    try:
        asyncio.run(run())
    finally:
        parts.close()
    return 0


# --- send, receive, verify ----------------------------------------------------------------


def _adapter_config(args: argparse.Namespace, settings: Settings) -> Any:
    from adapters import AdapterConfig

    home = Home(settings.home)
    code = args.as_code
    try:
        signer = home.participant_signer(code)
        password = args.password or home.participant_password(code)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    url = args.url or vhost_url(settings, code, password)
    return AdapterConfig(
        code=code,
        broker_url=url,
        signer=signer,
        anchors=tuple(home.anchors()),
        schema_dir=settings.schema_dir,
        max_message_bytes=settings.max_message_bytes,
    )


def prepare_outgoing(data: bytes, code: str, to: str | None, sign: Callable[[etree._Element], bytes]) -> bytes:
    """What `i2es send` publishes for one file: signed bytes as they are, else a freshly signed envelope."""
    try:
        root = parse_xml(data)
    except GatewayError as exc:
        raise CommandError(str(exc)) from None
    if root.find(f"{{{DSIG_NS}}}Signature") is not None:
        return data
    name = etree.QName(root)
    if name.namespace == DOCUMENT_NS:
        if not to:
            raise CommandError(f"a bare {name.localname} document needs --to CODE")
        header = Header(new_message_id(), code, to, name.localname, _now())
        return sign(build_envelope(header, root))
    if name.namespace != ENVELOPE_NS or name.localname != "Message":
        raise CommandError(f"expected an envelope or a document, found {root.tag}")
    claimed = read_header(root)
    if claimed.sender != code:
        raise CommandError(f"the envelope is From {claimed.sender}, but you send as {code}")
    # A sender fills MessageId and CreatedAt, then signs (the examples carry placeholders).
    header = Header(
        new_message_id(),
        code,
        to or claimed.recipient,
        claimed.type,
        _now(),
        claimed.conversation_id,
        claimed.ref_to_message_id,
    )
    body = root.find(f"{{{ENVELOPE_NS}}}Body")
    assert body is not None and len(body) == 1
    return sign(build_envelope(header, body[0]))


def _ack_summary(path: str, message_id: str, ack: Any) -> dict[str, Any]:
    return {
        "file": path,
        "message_id": message_id,
        "status": ack.status,
        "ledger_sequence": ack.ledger_sequence,
        "received_digest": ack.received_digest,
        "reasons": [{"code": c, "text": t} for c, t in ack.reasons],
        "warnings": [{"code": c, "text": t} for c, t in ack.warnings],
    }


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from adapters import Adapter
    from gateway.signature import sign_envelope

    config = _adapter_config(args, settings)
    outgoing = []
    for path in args.files:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        signed = prepare_outgoing(data, config.code, args.to, lambda e: sign_envelope(e, config.signer))
        header = read_header(parse_xml(signed))
        outgoing.append((path, header, signed))

    async def run() -> list[dict[str, Any]]:
        results = []
        async with Adapter(config) as adapter:
            for path, header, signed in outgoing:
                ack = await adapter.publish(
                    signed, message_id=header.message_id, type=header.type, timeout=args.timeout
                )
                results.append(_ack_summary(path, header.message_id, ack))
        return results

    try:
        results = asyncio.run(run())
    except TimeoutError:
        raise CommandError(
            f"no acknowledgement from the hub within {args.timeout} s: is `i2es gateway run` up?"
        ) from None
    if args.json:
        _print_json(results)
    else:
        for r in results:
            where = f" (ledger #{r['ledger_sequence']})" if r["ledger_sequence"] else ""
            print(f"{r['status']}  {r['file']}  {r['message_id']}{where}")
            for finding in r["reasons"]:
                print(f"  reason {finding['code']}: {finding['text']}")
            for finding in r["warnings"]:
                print(f"  warning {finding['code']}: {finding['text']}")
    return EXIT_REJECTED if any(r["status"] != "ACCEPTED" for r in results) else 0


def cmd_receive(args: argparse.Namespace, settings: Settings) -> int:
    from adapters import Adapter

    config = _adapter_config(args, settings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    async def run() -> int:
        received = 0
        async with Adapter(config) as adapter:
            while args.count is None or received < args.count:
                try:
                    delivery = await adapter.next_delivery(timeout=args.timeout)
                except TimeoutError:
                    break
                header = delivery.header
                name = header.message_id if header else f"unverified-{delivery.digest[:16]}"
                (out / f"{name}.xml").write_bytes(delivery.raw)  # stored before it is acknowledged
                receipt = await delivery.accept()
                received += 1
                line = {
                    "file": str(out / f"{name}.xml"),
                    "message_id": header.message_id if header else None,
                    "type": header.type if header else None,
                    "from": header.sender if header else None,
                    "verified": delivery.problem is None,
                    "problem": str(delivery.problem) if delivery.problem else None,
                    "receipt": receipt.status if receipt else None,
                }
                if args.json:
                    print(json.dumps(line), flush=True)
                else:
                    status = "verified" if line["verified"] else f"NOT VERIFIED ({line['problem']})"
                    answered = f", Receipt sent (hub: {line['receipt']})" if receipt else ""
                    print(
                        f"{line['type']} from {line['from']} {line['message_id']}: {status}{answered}",
                        flush=True,
                    )
        return received

    asyncio.run(run())
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.registry import Registry
    from gateway.signature import verify_envelope

    data = Path(args.file).read_bytes()
    home = Home(settings.home)
    anchors_path = Path(args.anchors) if args.anchors else home.anchors_path
    if not anchors_path.exists():
        raise CommandError(f"no trust anchors at {anchors_path}: give --anchors FILE (the output of `i2es ca show`)")
    from certs.keys import read_certificates

    revocations: RevocationList = NoRevocations()
    registry = None
    if not args.anchors and settings.ledger_path.exists():
        registry = Registry(settings.ledger_path)
        revocations = registry
    trust = TrustStore(tuple(read_certificates(anchors_path)), revocations=revocations)
    reading = ReadingPolicy.load(settings.schema_dir, settings.max_message_bytes)
    result: dict[str, Any] = {"file": args.file}
    try:
        verified = verify_envelope(read_message(data, reading), trust, _now())
        signer = verified.signer
        result |= {
            "valid": True,
            "signer": common_name(signer.subject),
            "certificate": _certificate_summary(signer),
            "signature_method": verified.signature_method,
            "message_id": verified.header.message_id,
            "type": verified.header.type,
            "from": verified.header.sender,
            "to": verified.header.recipient,
        }
    except GatewayError as exc:
        result |= {"valid": False, "reason": exc.code.value, "text": exc.message}
    finally:
        if registry is not None:
            registry.close()
    if args.json:
        _print_json(result)
    elif result["valid"]:
        cert = result["certificate"]
        print(f"VALID  {result['type']} {result['message_id']} {result['from']} -> {result['to']}")
        print(f"  signer: {cert['subject']} (serial {cert['serial']}, valid until {cert['not_after']})")
        print(f"  issuer: {cert['issuer']}")
        print(f"  method: {result['signature_method']}")
    else:
        print(f"INVALID  {result['reason']}: {result['text']}")
    return 0 if result["valid"] else EXIT_REJECTED


def cmd_ledger_show(args: argparse.Namespace, settings: Settings) -> int:
    ledger = _trade_record(settings)
    try:
        entries = ledger.entries(limit=args.limit, after=args.after)
    finally:
        ledger.close()
    rows = ledger_rows(entries)
    if args.json:
        _print_json(rows)
    else:
        print(format_ledger(rows))
    return 0


def ledger_rows(entries: Sequence[LedgerEntry]) -> list[dict[str, Any]]:
    """Ledger entries as plain rows, for JSON and for the table."""
    return [
        {
            "sequence": e.sequence,
            "received_at": e.received_at.isoformat(),
            "status": e.status,
            "type": e.type,
            "from": e.sender or e.broker_user,
            "to": e.recipient,
            "message_id": e.message_id,
            "digest": e.digest,
            "routed": e.routed_at is not None,
            "delivery": e.delivery_status,
            "reasons": [f.code for f in e.reasons],
            "warnings": [f.code for f in e.warnings],
            "signer_serial": e.signer_serial,
            "flag": e.flag,
        }
        for e in entries
    ]


def cmd_ledger_verify(args: argparse.Namespace, settings: Settings) -> int:
    from certs.keys import read_certificates
    from gateway.ledger.chain import verify_chain
    from gateway.ledger.extract import read_extract
    from gateway.signature import verify_signed

    if args.extract:
        anchors = Path(args.anchors) if args.anchors else Home(settings.home).anchors_path
        root = parse_xml(Path(args.extract).read_bytes())
        signed, signer, _ = verify_signed(root, TrustStore(tuple(read_certificates(anchors))), _now())
        if common_name(signer.subject) != "HUB":
            raise CommandError(f"the extract is signed by {common_name(signer.subject)!r}, not by the hub")
        previous, entries = read_extract(signed)
        report = verify_chain(entries, previous, entries[0].sequence if entries else 1)
    else:
        ledger = _trade_record(settings)
        try:
            report = ledger.verify()
        finally:
            ledger.close()
    summary = {"intact": report.intact, "entries": report.entries, "first": report.first, "last": report.last,
               "head": report.head, "problem": report.problem}  # fmt: skip
    if args.json:
        _print_json(summary)
    elif report.intact:
        print(f"ledger intact: {report.entries} entries (#{report.first} to #{report.last}), head {report.head}")
    else:
        print(f"LEDGER ALTERED: {report.problem}")
    return 0 if report.intact else EXIT_REJECTED


def cmd_ledger_export(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.ledger.extract import build_extract
    from gateway.runtime import HubParts
    from gateway.signature import sign_envelope

    ledger = _trade_record(settings)
    try:
        entries = list(ledger.chain(args.first, args.last))
        bodies = [e.body for e in ledger.entries(limit=len(entries), after=args.first - 1)]
        previous = ledger.hash_before(args.first)
    finally:
        ledger.close()
    parts = HubParts(settings)
    try:
        data = sign_envelope(build_extract(entries, bodies, previous, _now()), parts.signer)
    finally:
        parts.close()
    Path(args.out).write_bytes(data)
    print(f"wrote {len(entries)} entries (#{args.first} to #{entries[-1].sequence if entries else args.first}), "
          f"signed by the hub, to {args.out}")  # fmt: skip
    return 0


def format_ledger(rows: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'#':>4}  {'status':8}  {'type':21}  {'from':4}  {'to':3}  {'delivery':8}  reasons/warnings"]
    for r in rows:
        notes = ", ".join(r["reasons"] + r["warnings"] + ([f"FLAGGED {r['flag']}"] if r.get("flag") else []))
        lines.append(
            f"{r['sequence']:>4}  {r['status']:8}  {r['type'] or '?':21}  {r['from'] or '?':4}  "
            f"{r['to'] or '-':3}  {r['delivery'] or '-':8}  {notes}"
        )
    return "\n".join(lines)


def _trade_record(settings: Settings) -> SqlLedger:
    try:
        return ledger_for(settings)
    except LedgerMissing as missing:
        raise CommandError(str(missing)) from None


def cmd_estimates_load(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.rules.estimates import EstimatesFileError, read_estimates

    try:
        rows = read_estimates(Path(args.file).read_text(encoding="utf-8"))
    except EstimatesFileError as exc:
        raise CommandError(f"{args.file}: {exc}") from None
    ledger = _trade_record(settings)
    try:
        for row in rows:
            ledger.trade.load_estimate(row.country, row.inn, row.year, row.kind, row.grams, _now())
    finally:
        ledger.close()
    if args.json:
        _print_json({"loaded": len(rows)})
    else:
        print(f"loaded {len(rows)} figure(s) from {args.file}")
    return 0


def cmd_estimates_show(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.rules.substances import plain

    def figure(value: Decimal | None) -> str | None:
        return None if value is None else plain(value)

    ledger = _trade_record(settings)
    try:
        record = ledger.trade
        rows = [
            {
                "substance": inn,
                "year": year,
                "kind": kind,
                "grams": plain(grams),
                "confirmed_grams": figure(record.estimate(args.country, inn, year)),
                "authorized_grams": figure(record.counted_against_estimate(args.country, inn, year)),
            }
            for inn, year, kind, grams in record.estimates(args.country, args.year)
        ]
    finally:
        ledger.close()
    if args.json:
        _print_json(rows)
    else:
        print(f"{'year':4}  {'substance':18}  {'kind':13}  {'grams':>14}  {'confirmed':>14}  {'authorized':>14}")
        for r in rows:
            print(
                f"{r['year']:4}  {r['substance']:18}  {r['kind']:13}  {r['grams']:>14}  {r['confirmed_grams']:>14}  "
                f"{r['authorized_grams']:>14}"
            )
    return 0


def cmd_trade_show(args: argparse.Namespace, settings: Settings) -> int:
    ledger = _trade_record(settings)
    try:
        events = ledger.trade.events(args.number)
    finally:
        ledger.close()
    if not events:
        raise CommandError(f"no authorization {args.number} on file")
    rows = [e.__dict__ for e in events]
    if args.json:
        _print_json(rows)
    else:
        for e in events:
            where = f"#{e.sequence}" if e.sequence else "   "
            print(f"{where:>5}  {e.type:21}  {e.number:20}  {e.kind:30}  {e.detail}")
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    import csv

    from gateway.rules.substances import plain

    ledger = _trade_record(settings)
    try:
        totals = ledger.trade.yearly_totals(args.year, args.country, args.substance)
    finally:
        ledger.close()
    rows = [
        {
            "country": t.country,
            "substance": t.inn,
            "authorized_g": plain(t.authorized),
            "exported_g": plain(t.exported),
            "received_g": plain(t.received),
            "estimate_g": plain(t.estimate) if t.estimate is not None else "",
            "estimate_used_percent": str(t.estimate_used_percent) if t.estimate_used_percent is not None else "",
        }
        for t in totals
    ]
    if args.format == "json":
        _print_json(rows)
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["country"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        print(f"grams of anhydrous base, {args.year}")
        print(
            f"{'country':7}  {'substance':16}  {'authorized':>12}  {'exported':>12}  {'received':>12}  "
            f"{'estimate':>12}  {'used':>6}"
        )
        for r in rows:
            used = f"{r['estimate_used_percent']}%" if r["estimate_used_percent"] else "-"
            print(
                f"{r['country']:7}  {r['substance']:16}  {r['authorized_g']:>12}  {r['exported_g']:>12}  "
                f"{r['received_g']:>12}  {r['estimate_g'] or '-':>12}  {used:>6}"
            )
    return 0


def _duration_days(text: str) -> int:
    """`30d`, `30` or `4w` as a number of days."""
    units = {"d": 1, "w": 7}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "d")
    if not number.isdigit():
        raise CommandError(f"{text!r} is not a duration: write it as 30d or 4w")
    return int(number) * units[unit]


def cmd_cert_issue(args: argparse.Namespace, settings: Settings) -> int:
    from certs.authority import Profile
    from gateway.security import describe, issue

    csr = Path(args.csr).read_bytes() if args.csr else None
    issued = issue(
        settings, args.code, Profile(args.profile), _now(), actor=args.actor, csr=csr,
        out=Path(args.out) if args.out else None, p12=Path(args.p12) if args.p12 else None,
        passphrase=args.passphrase, dns_names=tuple(args.dns or ()),
    )  # fmt: skip
    summary = describe(issued.certificate) | {
        "profile": args.profile,
        "certificate_chain": str(issued.chain_path),
        "key": str(issued.key_path) if issued.key_path else None,
        "pkcs12": str(issued.p12_path) if issued.p12_path else None,
    }
    _print_summary(summary, args.json, f"issued {args.profile} certificate to {args.code}")
    return 0


def _print_summary(summary: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        _print_json(summary)
        return
    print(title)
    for key, value in summary.items():
        if value is not None:
            print(f"  {key}: {value}")


def cmd_cert_renew(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.security import describe, renew

    csr = Path(args.csr).read_bytes() if args.csr else None
    issued = renew(settings, args.serial, _now(), actor=args.actor, csr=csr, out=Path(args.out) if args.out else None)
    summary = describe(issued.certificate) | {
        "certificate_chain": str(issued.chain_path),
        "key": str(issued.key_path) if issued.key_path else None,
        "replaces": args.serial,
    }
    _print_summary(summary, args.json, f"renewed {args.serial}; the old certificate stays valid until it expires")
    return 0


def cmd_cert_list(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.registry import Registry

    now = _now()
    registry = Registry(settings.ledger_path)
    try:
        records = registry.certificates(args.code)
    finally:
        registry.close()
    if args.expiring:
        horizon = now + timedelta(days=_duration_days(args.expiring))
        records = [r for r in records if r.revoked_at is None and now < r.not_after <= horizon]
    rows = [
        {"serial": r.serial, "code": r.code, "profile": r.profile, "not_after": r.not_after.isoformat(),
         "status": r.status(now), "sha256": r.fingerprint}
        for r in records
    ]  # fmt: skip
    if args.json:
        _print_json(rows)
    else:
        print(f"{'serial':34}  {'code':4}  {'profile':7}  {'not after':25}  status")
        for r in rows:
            print(f"{r['serial']:34}  {r['code']:4}  {r['profile']:7}  {r['not_after']:25}  {r['status']}")
    return 0


def cmd_cert_show(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.security import certificate_of, describe, find

    record = find(settings, args.serial)
    summary = describe(certificate_of(settings, args.serial)) | {
        "profile": record.profile,
        "status": record.status(_now()),
    }
    _print_summary(summary, args.json, f"certificate {record.serial}")
    return 0


def cmd_cert_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.security import revoke

    revoked = revoke(settings, args.serial, args.reason, _now(), actor=args.actor)
    summary = {
        "serial": revoked.record.serial,
        "code": revoked.record.code,
        "reason": args.reason,
        "flagged_messages": revoked.flagged_messages,
        "closed_connections": revoked.closed_connections,
    }
    _print_summary(summary, args.json, f"revoked {revoked.record.serial}; the CRL is updated")
    return 0


def cmd_crl(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.security import publish_crl

    home = _initialized_home(settings)
    if args.update or not home.crl_path.exists():
        publish_crl(settings, _now(), actor=args.actor)
    sys.stdout.write(home.crl_path.read_text())
    return 0


def cmd_hsm_init(args: argparse.Namespace, settings: Settings) -> int:
    from certs.pkcs11 import TokenError
    from gateway.security import describe, init_token

    if not settings.pkcs11_pin:
        raise CommandError("set I2ES_PKCS11_PIN to the token's user PIN (it is never taken on the command line)")
    try:
        certificate = init_token(settings, _now(), actor=args.actor)
    except TokenError as exc:
        raise CommandError(str(exc)) from None
    summary = describe(certificate) | {
        "token": settings.pkcs11_token,
        "key_label": settings.pkcs11_key_label,
        "certificate_chain": str(Home(settings.home).hub_token_chain),
        "to_use_it": "I2ES_SIGNER=pkcs11 i2es gateway run",
    }
    _print_summary(summary, args.json, "the hub's signing key is in the token; its certificate is issued")
    return 0


def cmd_broker_tls(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.broker.tls import write_tls_broker

    _initialized_home(settings)
    broker = write_tls_broker(
        settings, Path(args.out), _now(), actor=args.actor, host=args.host, port=args.port,
        management_port=args.management_port, bind=args.bind,
    )  # fmt: skip
    home = Home(settings.home)
    summary = {
        "rabbitmq_conf": str(broker.config),
        "advanced_config": str(broker.advanced_config),
        "enabled_plugins": str(broker.plugins),
        "hub_broker_url": broker.url(home.hub_dir / "tls.pem", home.hub_dir / "tls.key"),
        "management_url": f"http://127.0.0.1:{broker.management_port}",
        "participant_url": broker.url(Path("CODE-tls.pem"), Path("CODE-tls.key"), settings.vhost),
    }
    _print_summary(summary, args.json, "TLS broker configuration written; run the hub with the URLs below")
    return 0


def cmd_ca_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.security import describe, rotate_issuing

    authority = rotate_issuing(settings, Path(args.root_key), _now(), actor=args.actor)
    _print_summary(describe(authority.issuing), args.json,
                   "new issuing CA; the old one stays in the anchors (i2es ca show) until its certificates are "
                   "replaced")  # fmt: skip
    return 0


def cmd_dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    import base64
    import hashlib

    from gateway.admin import management
    from gateway.broker.topology import DEAD_QUEUE

    messages = management(settings).peek(settings.vhost, DEAD_QUEUE, args.limit) or []
    rows = []
    for message in messages:
        properties = message.get("properties", {})
        headers = properties.get("headers", {}) or {}
        deaths = headers.get("x-death") or []
        body = base64.b64decode(message.get("payload", ""))
        rows.append({
            "message_id": properties.get("message_id"),
            "user_id": properties.get("user_id") or headers.get("x-i2es-user-id"),
            "type": properties.get("type"),
            "bytes": message.get("payload_bytes"),
            "sha256": hashlib.sha256(body).hexdigest() if len(body) == message.get("payload_bytes") else None,
            "reason": headers.get("x-i2es-reason")
            or (f"{deaths[0].get('reason')} from {deaths[0].get('queue')}" if deaths else None),
        })  # fmt: skip
    if args.json:
        _print_json(rows)
    elif not rows:
        print("the dead-letter queue is empty")
    else:
        for r in rows:
            print(f"{r['message_id'] or '-':36}  {r['user_id'] or '-':4}  {r['bytes']:>8} bytes  {r['reason']}")
    return 0


def cmd_dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.dead_letters import replay

    done = asyncio.run(replay(settings, args.message_id))
    if args.json:
        _print_json({"message_id": done.message_id, "user_id": done.user_id, "queue": "i2es.replay"})
    else:
        print(f"replayed {done.message_id} as sent by {done.user_id}: the hub takes it again from i2es.replay")
    return 0


def cmd_ca_audit(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.registry import Registry

    registry = Registry(settings.ledger_path)
    try:
        entries = registry.audit_entries()
    finally:
        registry.close()
    if args.json:
        _print_json([e.__dict__ for e in entries])
    else:
        for e in entries:
            print(
                f"{e.at.isoformat(timespec='seconds')}  {e.actor:10}  {e.action:7}  {e.code or '-':4}  "
                f"{e.serial or '-':34}  {e.detail}"
            )
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.demo import run_demo

    home = Path(args.home) if args.home else Path.cwd() / ".i2es-demo"
    return run_demo(settings.model_copy(update={"home": home, "vhost": args.vhost}))


# --- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="i2es",
        description="Hub for signed import and export authorizations between national drug-control systems. "
        "State lives in $I2ES_HOME (default ~/.i2es); the broker administrator in $I2ES_BROKER_URL.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, handler: Callable[..., int], help: str, json_flag: bool = True) -> Any:
        sub = parent.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        if json_flag:
            sub.add_argument("--json", action="store_true", help="print JSON for scripts")
        return sub

    init = command(
        commands,
        "init",
        cmd_init,
        "Create the hub CA, the hub's signing certificate, the ledger and "
        "the broker topology. Safe to run again: it keeps what exists.",
    )
    init.add_argument(
        "--ca-key",
        choices=["p384", "rsa3072", "rsa4096"],
        default="p384",
        help="key type of a new root and issuing CA (default: ECDSA P-384)",
    )
    init.add_argument(
        "--root-key-out",
        metavar="FILE",
        help="write a new root CA's key to FILE (e.g. removable media), not to the state folder",
    )

    ca = commands.add_parser("ca", help="The hub's certificate authority.").add_subparsers(
        dest="ca_command", required=True, metavar="SUBCOMMAND"
    )
    command(ca, "show", cmd_ca_show, "Print the hub's trust anchors (PEM): the root CA, then the issuing CA.")

    participant = commands.add_parser("participant", help="Register and revoke participants.").add_subparsers(
        dest="participant_command", required=True, metavar="SUBCOMMAND"
    )
    add = command(
        participant,
        "add",
        cmd_participant_add,
        "Register a participant: issue its signing certificate, create its broker user "
        "(write to i2es.inbound with its own routing key, read its own queue) and its deliver queue.",
    )
    add.add_argument("code", help="ISO 3166-1 alpha-2 code, upper case (DE, CH, IN)")
    add.add_argument("--name", required=True, help="the competent national authority's name")
    add.add_argument("--contact", help="a contact address for the authority")
    add.add_argument("--csr", metavar="FILE", help="issue from this PEM request (its CN must be CODE)")
    add.add_argument("--cert-out", metavar="FILE", help="with --csr: where to write the certificate chain")
    add.add_argument("--password", help="broker password for development connections (default: generated)")
    revoke = command(
        participant,
        "revoke",
        cmd_participant_revoke,
        "Revoke every certificate of a participant: the hub refuses its later messages with CERTIFICATE_REVOKED.",
    )
    revoke.add_argument("code")
    command(participant, "list", cmd_participant_list, "List participants and their certificates.")

    gateway = commands.add_parser("gateway", help="The hub service.").add_subparsers(
        dest="gateway_command", required=True, metavar="SUBCOMMAND"
    )
    command(
        gateway,
        "run",
        cmd_gateway_run,
        "Run the hub in the foreground until SIGTERM or Ctrl-C; in-flight messages are finished first.",
        json_flag=False,
    )

    def as_participant(sub: Any) -> None:
        sub.add_argument("--as", dest="as_code", required=True, metavar="CODE", help="the participant to act as")
        sub.add_argument("--password", help="broker password (default: from the participant's folder)")
        sub.add_argument("--url", help="AMQP URL to connect with (default: the local broker, vhost i2es)")

    send = command(
        commands,
        "send",
        cmd_send,
        "Sign and send documents as a participant; print the hub's verified acknowledgement. "
        "A FILE may be a bare document (needs --to), an unsigned envelope (a new MessageId and "
        "CreatedAt are filled in) or a signed envelope (sent byte for byte). Exits 1 if any is REJECTED.",
    )
    as_participant(send)
    send.add_argument("--to", metavar="CODE", help="recipient for bare documents (overrides an envelope's To)")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each acknowledgement")
    send.add_argument("files", nargs="+", metavar="FILE")

    receive = command(
        commands,
        "receive",
        cmd_receive,
        "Receive as a participant: verify and store each delivery in DIR, answer documents "
        "with a signed Receipt, then acknowledge it to the broker.",
    )
    as_participant(receive)
    receive.add_argument("--out", required=True, metavar="DIR", help="folder for the received messages")
    receive.add_argument("--count", type=int, help="stop after this many deliveries")
    receive.add_argument("--timeout", type=float, help="stop after this many seconds without a delivery")

    verify = command(
        commands,
        "verify",
        cmd_verify,
        "Check a signed message offline: schema, signature, algorithms, the signer's certificate.",
    )
    verify.add_argument("file", metavar="FILE")
    verify.add_argument("--anchors", metavar="FILE", help="trust anchors PEM (default: the hub's)")

    ledger = commands.add_parser("ledger", help="The hub's ledger.").add_subparsers(
        dest="ledger_command", required=True, metavar="SUBCOMMAND"
    )
    show = command(ledger, "show", cmd_ledger_show, "Show ledger entries in order.")
    show.add_argument("--limit", type=int, default=100)
    show.add_argument("--after", type=int, default=0, help="start after this sequence number")
    verify_ledger = command(
        ledger,
        "verify",
        cmd_ledger_verify,
        "Recompute the ledger's hash chain and report the first entry changed, removed or "
        "reordered; with --extract, check a signed extract (signature and chain) instead.",
    )
    verify_ledger.add_argument("--extract", metavar="FILE", help="an extract written by `i2es ledger export`")
    verify_ledger.add_argument("--anchors", metavar="FILE", help="with --extract: the hub CA (default: the hub's)")
    export = command(
        ledger,
        "export",
        cmd_ledger_export,
        "Write entries FROM to TO, with their chain hashes and the bytes received, as one XML document "
        "signed by the hub: an auditor checks it with xmlsec1 or `i2es ledger verify --extract`.",
        json_flag=False,
    )
    export.add_argument("--from", dest="first", type=int, default=1, metavar="FROM")
    export.add_argument("--to", dest="last", type=int, metavar="TO")
    export.add_argument("--out", required=True, metavar="FILE")

    cert = commands.add_parser("cert", help="Certificates: issue, list, show, renew, revoke.").add_subparsers(
        dest="cert_command", required=True, metavar="SUBCOMMAND"
    )

    def acting(sub: Any) -> Any:
        sub.add_argument("--actor", default=default_actor(), help="who acts, for the audit log (default: you)")
        return sub

    cert_issue = acting(
        command(
            cert,
            "issue",
            cmd_cert_issue,
            "Issue a certificate to a registered participant: signing (XML-DSig), tls (client, "
            "for the broker's EXTERNAL login) or server (the broker's TLS listener). From a "
            "PEM request with --csr, else the hub makes the key.",
        )
    )
    cert_issue.add_argument("code", metavar="CODE")
    cert_issue.add_argument("--profile", choices=["signing", "tls", "server"], required=True)
    cert_issue.add_argument("--csr", metavar="FILE", help="PEM request; its CN must be CODE")
    cert_issue.add_argument("--out", metavar="FILE", help="where to write the certificate chain (PEM)")
    cert_issue.add_argument("--p12", metavar="FILE", help="also write a PKCS#12 keystore (needs --passphrase)")
    cert_issue.add_argument("--passphrase", help="the PKCS#12 keystore's passphrase")
    cert_issue.add_argument("--dns", action="append", metavar="NAME", help="server profile: a DNS name (repeat)")
    cert_renew = acting(
        command(
            cert,
            "renew",
            cmd_cert_renew,
            "Issue a new certificate for the same participant and profile; the old one stays "
            "valid until it expires, so both can be used during the overlap.",
        )
    )
    cert_renew.add_argument("serial", metavar="SERIAL")
    cert_renew.add_argument("--csr", metavar="FILE")
    cert_renew.add_argument("--out", metavar="FILE")
    cert_list = command(cert, "list", cmd_cert_list, "List the certificates the hub issued.")
    cert_list.add_argument("code", metavar="CODE", nargs="?")
    cert_list.add_argument("--expiring", metavar="DAYS", help="only those valid now that expire within, e.g. 30d")
    cert_show = command(cert, "show", cmd_cert_show, "Show one certificate: subject, validity, fingerprints, status.")
    cert_show.add_argument("serial", metavar="SERIAL")
    cert_revoke = acting(
        command(
            cert,
            "revoke",
            cmd_cert_revoke,
            "Revoke a certificate. The hub refuses it from the next message on, the CRL lists "
            "it, and the broker drops the participant's TLS connections. keyCompromise also "
            "flags the messages it signed; superseded leaves them valid.",
        )
    )
    cert_revoke.add_argument("serial", metavar="SERIAL")
    cert_revoke.add_argument("--reason", required=True, choices=list(REVOCATION_REASONS))
    crl = acting(
        command(commands, "crl", cmd_crl, "Print the issuing CA's certificate revocation list (PEM).", json_flag=False)
    )
    crl.add_argument("--update", action="store_true", help="sign a new CRL first")
    command(ca, "audit", cmd_ca_audit, "Every action of the certificate authority: who, what, when.")
    rotate = acting(
        command(
            ca,
            "rotate-issuing",
            cmd_ca_rotate,
            "Make a new issuing CA under the root, with the root's key brought back from offline; "
            "new certificates come from it, those of the old one stay valid.",
        )
    )
    rotate.add_argument("--root-key", required=True, metavar="FILE", help="the root CA's private key (PEM)")
    broker = commands.add_parser("broker", help="The broker's configuration.").add_subparsers(
        dest="broker_command", required=True, metavar="SUBCOMMAND"
    )
    tls = acting(
        command(
            broker,
            "tls-config",
            cmd_broker_tls,
            "Write a RabbitMQ configuration for production: TLS only, a server certificate from the "
            "hub CA, verify_peer and fail_if_no_peer_cert, the CRL check, and certificate login "
            "(SASL EXTERNAL, the user is the certificate's CN). Issues the server certificate and "
            "the hub's own client certificate.",
        )
    )
    tls.add_argument("--out", required=True, metavar="DIR")
    tls.add_argument("--host", default="localhost", help="the broker's host name, in its certificate")
    tls.add_argument("--port", type=int, default=5671)
    tls.add_argument("--bind", default="127.0.0.1", help="address the TLS listener binds")
    tls.add_argument("--management-port", type=int, default=15672)
    dlq = commands.add_parser("dlq", help="The dead-letter queue.").add_subparsers(
        dest="dlq_command", required=True, metavar="SUBCOMMAND"
    )
    dlq_list = command(
        dlq, "list", cmd_dlq_list, "Show the messages in i2es.dead and why each is there, leaving them in the queue."
    )
    dlq_list.add_argument("--limit", type=int, default=50)
    dlq_replay = command(
        dlq,
        "replay",
        cmd_dlq_replay,
        "Give one dead letter back to the hub, as sent by its original broker user; removed from i2es.dead once "
        "the broker has confirmed it.",
    )
    dlq_replay.add_argument("message_id", help="its AMQP message_id, as `i2es dlq list` shows it")
    hsm = commands.add_parser("hsm", help="The hub's signing key in a PKCS#11 token.").add_subparsers(
        dest="hsm_command", required=True, metavar="SUBCOMMAND"
    )
    acting(
        command(
            hsm,
            "init",
            cmd_hsm_init,
            "Generate the hub's signing key in the token named by I2ES_PKCS11_TOKEN (library "
            "I2ES_PKCS11_MODULE, PIN I2ES_PKCS11_PIN) unless it has one, and issue its certificate. "
            "Then run the hub with I2ES_SIGNER=pkcs11.",
        )
    )

    estimates = commands.add_parser(
        "estimates", help="Estimates and assessments confirmed by the Board."
    ).add_subparsers(dest="estimates_command", required=True, metavar="SUBCOMMAND")
    load = command(
        estimates,
        "load",
        cmd_estimates_load,
        "Load figures from a CSV file with the columns country,substance,year,quantity,unit,kind "
        "(quantity of anhydrous base; kind: estimate, supplementary estimate or assessment). A figure "
        "replaces the one loaded before for the same country, substance, year and kind.",
    )
    load.add_argument("file", metavar="FILE.csv")
    show_estimates = command(
        estimates,
        "show",
        cmd_estimates_show,
        "Show a country's figures and how much of them authorizations already use.",
    )
    show_estimates.add_argument("country", metavar="COUNTRY")
    show_estimates.add_argument("--year", type=int)

    trade = commands.add_parser("trade", help="The trade record.").add_subparsers(
        dest="trade_command", required=True, metavar="SUBCOMMAND"
    )
    trade_show = command(
        trade,
        "show",
        cmd_trade_show,
        "The whole chain of one trade: the authorization, those that answer it, endorsements, "
        "cancellations, clarifications and the hub's notices.",
    )
    trade_show.add_argument("number", metavar="NUMBER", help="an authorization number, e.g. CH-IMP-2026-004711")

    report = command(
        commands,
        "report",
        cmd_report,
        "Totals per importing country and substance for a year: authorized, exported, received, "
        "and the share of the estimate used.",
        json_flag=False,
    )
    report.add_argument("--year", type=int, required=True)
    report.add_argument("--country")
    report.add_argument("--substance")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")

    demo = command(
        commands,
        "demo",
        cmd_demo,
        "Run a whole trade between CH (importing) and DE (exporting) through a hub on the local "
        "broker, printing each step and the ledger.",
        json_flag=False,
    )
    demo.add_argument("--home", help="state folder for the demo (default: ./.i2es-demo)")
    demo.add_argument("--vhost", default="i2es-demo", help="broker vhost for the demo (default: i2es-demo)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.broker.management import ManagementError
    from gateway.security import SecurityError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        return int(args.handler(args, settings))
    except (CommandError, AdminError, SecurityError, ManagementError, GatewayError, OSError) as exc:
        print(f"i2es: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
