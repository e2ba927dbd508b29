"""The PII detectors: patterns for RE2 and Python's re, their validators, column-name hints.

Validators (Luhn with issuer prefixes, IBAN mod-97, IPv6 parsing) run in Python on
candidate matches only; the patterns alone must already keep clean text out cheaply.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

PATTERN_KINDS = ("email", "phone", "credit_card", "iban", "us_ssn", "ip_address")
HINT_KINDS = ("person_name", "address", "birth_date")
KINDS: tuple[str, ...] = PATTERN_KINDS + HINT_KINDS


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i & 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


# Issuer prefixes of the card networks (Visa, Mastercard incl. 2-series, Amex, Diners, JCB,
# Discover, UnionPay, Maestro): together with Luhn this keeps long ids and date pairs out.
_IIN = re.compile(
    r"4|5[0-8]|6|3[04678]|39|35(?:2[89]|[3-8]\d)"  # Visa, Mastercard, Maestro, ..., Amex, JCB
    r"|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)"  # Mastercard 2221-2720
)


def _card_span(text: str) -> tuple[int, int] | None:
    """The longest run of digit groups in ``text`` that is a card number."""
    if text.isdigit():
        return (0, len(text)) if _IIN.match(text) and _luhn(text) else None
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", text)]
    for size in range(len(groups), 0, -1):  # a card followed by its CVV: try the groups before
        for first in range(len(groups) - size + 1):
            start, end = groups[first][0], groups[first + size - 1][1]
            digits = re.sub(r"\D", "", text[start:end])
            if 13 <= len(digits) <= 19 and _IIN.match(digits) and _luhn(digits):
                return start, end
    return None


# IBAN length per country (ISO 13616 registry).
_IBAN_LENGTHS = {
    **dict.fromkeys(["NO"], 15),
    **dict.fromkeys(["BE"], 16),
    **dict.fromkeys(["DK", "FI", "FO", "GL", "NL", "SD", "FK"], 18),
    **dict.fromkeys(["MK", "SI"], 19),
    **dict.fromkeys(["AT", "BA", "EE", "KZ", "LT", "LU", "XK", "MN"], 20),
    **dict.fromkeys(["CH", "HR", "LI", "LV"], 21),
    **dict.fromkeys(["BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS", "VA"], 22),
    **dict.fromkeys(["AE", "GI", "IL", "IQ", "TL", "SO", "OM"], 23),
    **dict.fromkeys(["AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"], 24),
    **dict.fromkeys(["PT", "ST", "LY"], 25),
    **dict.fromkeys(["IS", "TR"], 26),
    **dict.fromkeys(["FR", "GR", "IT", "MC", "MR", "SM", "BI", "DJ"], 27),
    **dict.fromkeys(["AL", "AZ", "BY", "CY", "DO", "GT", "HU", "LB", "PL", "SV", "NI", "HN"], 28),
    **dict.fromkeys(["BR", "EG", "PS", "QA", "UA"], 29),
    **dict.fromkeys(["JO", "KW", "MU", "YE"], 30),
    **dict.fromkeys(["MT", "SC"], 31),
    **dict.fromkeys(["LC"], 32),
    **dict.fromkeys(["RU"], 33),
}


def _iban_ok(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban_span(text: str) -> tuple[int, int] | None:
    positions = [i for i, ch in enumerate(text) if ch != " "]
    compact = "".join(text[i] for i in positions)
    length = _IBAN_LENGTHS.get(compact[:2])
    if length is None or len(compact) < length or not _iban_ok(compact[:length]):
        return None
    return 0, positions[length - 1] + 1


def _ip6_span(text: str) -> tuple[int, int] | None:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return None
    # "a::b" parses, but a lone "::" or letters-only pairs are namespaces, not addresses.
    if sum(1 for g in text.split(":") if g) < 2 or not any(ch.isdigit() for ch in text):
        return None
    return 0, len(text)


@dataclass(frozen=True, slots=True)
class _Detector:
    kind: str
    pattern: str  # RE2, for pyarrow.compute
    py: re.Pattern[str]  # the same language for Python's re, used on candidate cells only
    normalise: Callable[[str], str]  # what gets hashed
    # Only validated kinds have ``accept`` (the valid span in a match, or None); the others
    # have ``normalise_all``, the same normalisation over an Arrow array.
    accept: Callable[[str], tuple[int, int] | None] | None = None
    normalise_all: Callable[[pa.Array], pa.Array] | None = None

    @property
    def marker(self) -> str:
        return f"[{self.kind.upper()}]"


def _strip(keep: str) -> tuple[Callable[[str], str], Callable[[pa.Array], pa.Array]]:
    """Normalisers that keep only the characters of the class ``keep``, for str and Arrow."""
    drop = re.compile(f"[^{keep}]")
    return (
        lambda text: drop.sub("", text),
        lambda values: pc.replace_substring_regex(values, f"[^{keep}]", ""),
    )


_DIGITS = _strip("0-9")
_PHONE_DIGITS = _strip("0-9+")  # "+" only ever leads a phone match
_EMAIL_CHARS = r"[A-Za-z0-9._%+\-]"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_HEX = r"[0-9A-Fa-f]{1,4}"
_PHONE = "|".join(
    [
        r"\+\d(?:[ .\-]?\(?\d\)?){7,14}\b",  # international, 8 to 15 digits (E.164)
        r"(?:\(\d{3}\)[ .\-]?|\b\d{3}[ .\-])\d{3}[ .\-]\d{4}\b",  # (415) 555-2671, 415.555.2671
        r"\b0\d{2,4} \d{3,4} \d{3,4}\b",  # 020 7946 0958
        r"\b0[1-9](?:[ .\-]\d{2}){4}\b",  # 01 23 45 67 89
        r"\b0\d{2,4}[ /\-]\d{5,8}\b",  # 030 12345678, 089/1234567
    ]
)
_EMAIL = _EMAIL_CHARS + r"+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b"
# Unbroken, or grouped as printed (4-4-4-4[-3], Amex 4-6-5, Diners 4-6-4), led by a digit
# networks issue from: UUIDs, date pairs and epoch timestamps are digit runs too.
_CARD = (
    r"\b[2-6](?:\d{12,18}|\d{3}(?:[ \-]\d{4}){3}(?:[ \-]?\d{1,3})?|\d{3}[ \-]\d{6}[ \-]\d{4,5})\b"
)
_SSN = (
    r"\b(?:00[1-9]|0[1-9]\d|[1-5]\d\d|6[0-57-9]\d|66[0-57-9]|[78]\d\d)"
    r"-(?:0[1-9]|[1-9]\d)-(?:000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})\b"
)
_IP6 = (
    rf"\b(?:{_HEX}:){{7}}{_HEX}\b"
    rf"|(?:\b(?:{_HEX}:){{0,6}}{_HEX})?::(?:{_HEX}(?::{_HEX}){{0,6}}\b)?"
)

_DETECTORS: tuple[_Detector, ...] = (
    _Detector(
        "email",
        _EMAIL,
        # Same matches (one always starts where its run of local-part characters starts),
        # but Python's re no longer retries every position inside a long run.
        re.compile(f"(?<!{_EMAIL_CHARS})" + _EMAIL, re.ASCII),
        str.lower,
        normalise_all=pc.ascii_lower,
    ),
    _Detector(
        "iban",
        r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", re.ASCII),
        lambda text: text.replace(" ", ""),
        accept=_iban_span,
    ),
    _Detector("credit_card", _CARD, re.compile(_CARD, re.ASCII), _DIGITS[0], accept=_card_span),
    _Detector("us_ssn", _SSN, re.compile(_SSN, re.ASCII), _DIGITS[0], normalise_all=_DIGITS[1]),
    _Detector(
        "ip_address",
        rf"\b(?:{_OCTET}\.){{3}}{_OCTET}\b",
        re.compile(rf"\b(?:{_OCTET}\.){{3}}{_OCTET}\b", re.ASCII),
        str,
        normalise_all=lambda values: values,
    ),
    _Detector(
        "ip_address",
        _IP6,
        re.compile(_IP6, re.ASCII),
        lambda text: ipaddress.IPv6Address(text).compressed,
        accept=_ip6_span,
    ),
    _Detector(
        "phone",
        _PHONE,
        re.compile(_PHONE, re.ASCII),
        _PHONE_DIGITS[0],
        normalise_all=_PHONE_DIGITS[1],
    ),
)
# _REST[i]: the union of detector i and those after it; _REST[0] finds candidates.
_REST = ["|".join(f"(?:{d.pattern})" for d in _DETECTORS[i:]) for i in range(len(_DETECTORS))]
_UNION = _REST[0]


# --- column-name hints ------------------------------------------------------------------------

_BIRTH_WORDS = {"dob", "birth", "birthdate", "birthday"}
_PERSON_WORDS = {"fname", "lname", "surname", "forename", "forenames", "firstname", "lastname"}
_PERSON_WORDS |= {"fullname", "givenname", "familyname"}
_PERSON_BEFORE_NAME = {"first", "last", "full", "given", "family", "middle", "maiden", "sur"}
_PERSON_BEFORE_NAME |= {"person", "customer", "client", "contact", "patient", "employee"}
_PERSON_BEFORE_NAME |= {"member", "holder", "cardholder", "owner", "applicant", "recipient"}
_ADDRESS_WORDS = {"address", "addr", "street", "postcode", "zip", "zipcode", "postalcode"}
_NOT_POSTAL = {"email", "mail", "ip", "ipv4", "ipv6", "mac", "url", "web", "wallet", "host"}


def _tokens(column: str) -> list[str]:
    parts = re.split(r"[_\-\s.]+", column)
    words = [w for p in parts for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", p)]
    return [w.lower() for w in words]


def _name_hint(column: str) -> str | None:
    """The PII kind a column's name announces, if any."""
    tokens = _tokens(column)
    if _BIRTH_WORDS & set(tokens):
        return "birth_date"
    pairs = set(itertools.pairwise(tokens))
    if (
        tokens == ["name"]
        or _PERSON_WORDS & set(tokens)
        or any(b == "name" and a in _PERSON_BEFORE_NAME for a, b in pairs)
    ):
        return "person_name"
    if ("postal", "code") in pairs or any(t in _ADDRESS_WORDS for t in tokens):
        return None if _NOT_POSTAL & set(tokens) else "address"
    return None
