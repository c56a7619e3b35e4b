"""The contract's reason and warning codes, and the one exception tree that carries them."""

from __future__ import annotations

import enum


class ReasonCode(enum.StrEnum):
    """Why the hub refused a message (interface contract, section 5). Stable: new codes are added, never renamed."""

    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    MALFORMED_XML = "MALFORMED_XML"
    FORBIDDEN_XML_CONSTRUCT = "FORBIDDEN_XML_CONSTRUCT"
    SCHEMA_INVALID = "SCHEMA_INVALID"
    SIGNATURE_MISSING = "SIGNATURE_MISSING"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    UNSUPPORTED_ALGORITHM = "UNSUPPORTED_ALGORITHM"
    CERTIFICATE_UNTRUSTED = "CERTIFICATE_UNTRUSTED"
    CERTIFICATE_EXPIRED = "CERTIFICATE_EXPIRED"
    CERTIFICATE_REVOKED = "CERTIFICATE_REVOKED"
    SENDER_MISMATCH = "SENDER_MISMATCH"
    UNKNOWN_RECIPIENT = "UNKNOWN_RECIPIENT"
    STALE_MESSAGE = "STALE_MESSAGE"
    DUPLICATE_MESSAGE_ID = "DUPLICATE_MESSAGE_ID"
    ESTIMATE_EXCEEDED = "ESTIMATE_EXCEEDED"
    QUANTITY_EXCEEDS_AUTHORIZATION = "QUANTITY_EXCEEDS_AUTHORIZATION"
    AUTHORIZATION_MISMATCH = "AUTHORIZATION_MISMATCH"
    AUTHORIZATION_EXPIRED = "AUTHORIZATION_EXPIRED"
    UNKNOWN_REFERENCE = "UNKNOWN_REFERENCE"
    PROPERTY_MISMATCH = "PROPERTY_MISMATCH"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class WarningCode(enum.StrEnum):
    """What an accepted message may carry (interface contract, section 5)."""

    REFERENCE_NOT_ON_FILE = "REFERENCE_NOT_ON_FILE"
    NO_ESTIMATE_ON_FILE = "NO_ESTIMATE_ON_FILE"
    ANHYDROUS_BASE_DIFFERS = "ANHYDROUS_BASE_DIFFERS"
    QUANTITY_DISCREPANCY = "QUANTITY_DISCREPANCY"
    RECEIPT_DIGEST_DIFFERS = "RECEIPT_DIGEST_DIFFERS"
    CERTIFICATE_EXPIRES_SOON = "CERTIFICATE_EXPIRES_SOON"


class GatewayError(Exception):
    """A refusal: a reason code of the contract and a sentence a person can act on."""

    code: ReasonCode = ReasonCode.INTERNAL_ERROR

    def __init__(self, message: str, *, code: ReasonCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ReadingError(GatewayError):
    """The bytes are not a document the hub can read."""


class MessageTooLarge(ReadingError):
    code = ReasonCode.MESSAGE_TOO_LARGE


class MalformedXml(ReadingError):
    code = ReasonCode.MALFORMED_XML


class ForbiddenXmlConstruct(ReadingError):
    code = ReasonCode.FORBIDDEN_XML_CONSTRUCT


class SchemaInvalid(ReadingError):
    code = ReasonCode.SCHEMA_INVALID


class PropertyMismatch(GatewayError):
    code = ReasonCode.PROPERTY_MISMATCH


class SignatureError(GatewayError):
    """The XML signature is absent, malformed or does not verify."""

    code = ReasonCode.SIGNATURE_INVALID


class SignatureMissing(SignatureError):
    code = ReasonCode.SIGNATURE_MISSING


class SignatureInvalid(SignatureError):
    code = ReasonCode.SIGNATURE_INVALID


class UnsupportedAlgorithm(SignatureError):
    code = ReasonCode.UNSUPPORTED_ALGORITHM


class CertificateError(GatewayError):
    """The signer's certificate cannot be trusted."""

    code = ReasonCode.CERTIFICATE_UNTRUSTED


class CertificateUntrusted(CertificateError):
    code = ReasonCode.CERTIFICATE_UNTRUSTED


class CertificateExpired(CertificateError):
    code = ReasonCode.CERTIFICATE_EXPIRED


class CertificateRevoked(CertificateError):
    code = ReasonCode.CERTIFICATE_REVOKED


class SenderMismatch(GatewayError):
    code = ReasonCode.SENDER_MISMATCH


class UnknownRecipient(GatewayError):
    code = ReasonCode.UNKNOWN_RECIPIENT


class StaleMessage(GatewayError):
    code = ReasonCode.STALE_MESSAGE


class DuplicateMessageId(GatewayError):
    code = ReasonCode.DUPLICATE_MESSAGE_ID


class UnknownReference(GatewayError):
    code = ReasonCode.UNKNOWN_REFERENCE


class EstimateExceeded(GatewayError):
    code = ReasonCode.ESTIMATE_EXCEEDED


class QuantityExceedsAuthorization(GatewayError):
    code = ReasonCode.QUANTITY_EXCEEDS_AUTHORIZATION


class AuthorizationMismatch(GatewayError):
    code = ReasonCode.AUTHORIZATION_MISMATCH


class AuthorizationExpired(GatewayError):
    code = ReasonCode.AUTHORIZATION_EXPIRED
