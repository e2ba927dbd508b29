"""PII detection and masking over Arrow record batches, one batch at a time.

Why it is built this way:

* **Streaming.** The service passes every batch of every table file of a
  version through one :class:`PiiScanner` before anything is written; the
  batches it returns are what gets stored, so unmasked values never reach the
  store when a masking policy applies, and memory does not grow with the data.
* **Clean data costs almost nothing.** A column's values are joined block by
  block with ``\\n`` between them (no pattern matches ``\\n``, so no match can
  span two cells) and one RE2 pass of the union of all detector patterns
  tells which blocks can hold PII. Clean blocks are done; hit blocks are
  narrowed again, then matched per row and per detector with
  ``pyarrow.compute``. Only those matches reach Python (Luhn, mod-97, IPv6
  parsing, HMAC).
* **A cell's output depends only on its value**, its column's policy and the
  key, never on other cells or on batch order: batches are independent and
  hashed tokens line up across tables, so joins still work.
* **Detectors run in priority order on the residual text** (email, IBAN,
  card, SSN, IPv4, IPv6, phone): a value already replaced by a marker or token
  cannot be counted again as a weaker kind (an IBAN's digits as a card, an IP
  address as a phone number).
* **The report never holds values**: counts per kind and (file, row)
  positions only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlplane.errors import InvalidInput

__all__ = [
    "KINDS",
    "POLICIES",
    "ColumnFinding",
    "PiiPolicy",
    "PiiReport",
    "PiiScanner",
    "detect_columns",
    "parse_policy",
]

PATTERN_KINDS = ("email", "phone", "credit_card", "iban", "us_ssn", "ip_address")
HINT_KINDS = ("person_name", "address", "birth_date")
KINDS: tuple[str, ...] = PATTERN_KINDS + HINT_KINDS
POLICIES = ("block", "mask", "hash", "drop", "allow")

_MAX_EXAMPLES = 5
_REDACTED = "[REDACTED]"  # explicit mask on a cell where nothing was detected
_BLOCK_BYTES = 4096  # text per block in the union pass
_CACHE_MAX = 1 << 16  # HMAC tokens kept per scanner


# --- detectors ------------------------------------------------------------------------------


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
    accept: Callable[[str], tuple[int, int] | None] | None  # the valid span in a match, or None
    normalise: Callable[[str], str]  # what gets hashed

    @property
    def marker(self) -> str:
        return f"[{self.kind.upper()}]"


def _detector(
    kind: str,
    pattern: str,
    normalise: Callable[[str], str],
    accept: Callable[[str], tuple[int, int] | None] | None = None,
    py_prefix: str = "",
) -> _Detector:
    return _Detector(kind, pattern, re.compile(py_prefix + pattern, re.ASCII), accept, normalise)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _phone_digits(text: str) -> str:
    return ("+" if text.startswith("+") else "") + _digits(text)


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

_DETECTORS: tuple[_Detector, ...] = (
    _detector(
        "email",
        _EMAIL_CHARS + r"+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b",
        str.lower,
        # Same matches (a match always starts where the run of local-part characters
        # starts), but Python's re no longer retries every position inside a long run.
        py_prefix=f"(?<!{_EMAIL_CHARS})",
    ),
    _detector(
        "iban",
        r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
        lambda s: re.sub(r"[^0-9A-Za-z]", "", s).upper(),
        _iban_span,
    ),
    _detector(
        "credit_card",
        # Unbroken, or grouped as printed on cards (4-4-4-4[-3], Amex 4-6-5, Diners 4-6-4):
        # UUIDs and date pairs are digits and dashes too.
        r"\b(?:\d{13,19}|\d{4}(?:[ \-]\d{4}){3}(?:[ \-]?\d{1,3})?|\d{4}[ \-]\d{6}[ \-]\d{4,5})\b",
        _digits,
        _card_span,
    ),
    _detector(
        "us_ssn",
        r"\b(?:00[1-9]|0[1-9]\d|[1-5]\d\d|6[0-57-9]\d|66[0-57-9]|[78]\d\d)"
        r"-(?:0[1-9]|[1-9]\d)-(?:000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})\b",
        _digits,
    ),
    _detector("ip_address", rf"\b(?:{_OCTET}\.){{3}}{_OCTET}\b", str),
    _detector(
        "ip_address",
        rf"\b(?:{_HEX}:){{7}}{_HEX}\b|(?:\b(?:{_HEX}:){{0,6}}{_HEX})?::(?:{_HEX}(?::{_HEX}){{0,6}}\b)?",
        lambda s: ipaddress.IPv6Address(s).compressed,
        _ip6_span,
    ),
    _detector("phone", _PHONE, _phone_digits),
)
_UNION = "|".join(f"(?:{d.pattern})" for d in _DETECTORS)


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


# --- policy ---------------------------------------------------------------------------------


def _word(value: object) -> str:
    word = value.strip().lower() if isinstance(value, str) else value
    if word not in POLICIES:
        raise InvalidInput(f"unknown PII policy {value!r}: use one of {', '.join(POLICIES)}")
    return str(word)


@dataclass(frozen=True)
class PiiPolicy:
    """What to do where PII is found.

    Attributes:
        default: The action for every column without its own policy (``None``:
            detect and record only).
        columns: Per-column actions, by column name.
    """

    default: str | None = None
    columns: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default is not None:
            _word(self.default)
        for word in self.columns.values():
            _word(word)

    def as_spec(self) -> dict[str, str]:
        """The mapping form ``{"column": action, "*": default}`` that :func:`parse_policy` reads."""
        spec = dict(self.columns)
        if self.default is not None:
            spec["*"] = self.default
        return spec

    def to_json(self) -> str:
        """The policy as JSON text (the mapping form)."""
        return json.dumps(self.as_spec(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PiiPolicy:
        """Read what :meth:`to_json` wrote."""
        try:
            return parse_policy(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"PII policy is not valid JSON: {exc}") from None


def parse_policy(spec: str | Mapping[str, str] | PiiPolicy | None) -> PiiPolicy:
    """Read a PII policy.

    Args:
        spec: ``None`` (detect only), one of :data:`POLICIES` for every column,
            a mapping ``{"email": "hash", "notes": "mask", "*": "block"}`` with
            ``"*"`` as the default, its JSON text, or a :class:`PiiPolicy`.

    Returns:
        The policy.

    Raises:
        InvalidInput: An unknown policy word or a malformed spec.
    """
    if spec is None or isinstance(spec, PiiPolicy):
        return spec or PiiPolicy()
    if isinstance(spec, str):
        if spec.lstrip().startswith("{"):
            return PiiPolicy.from_json(spec)
        return PiiPolicy(default=_word(spec))
    if not isinstance(spec, Mapping):
        raise InvalidInput(f"a PII policy is a word or a mapping of column to word, not {spec!r}")
    columns: dict[str, str] = {}
    for column, word in spec.items():
        if not isinstance(column, str) or not column:
            raise InvalidInput(f"PII policy keys are column names or '*', not {column!r}")
        columns[column] = _word(word)
    default = columns.pop("*", None)
    return PiiPolicy(default=default, columns=columns)


# --- report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnFinding:
    """What was found in one column, and what was done about it.

    Attributes:
        column: The column name.
        kinds: Number of cells with each kind of PII.
        rows: Number of cells with any PII.
        examples: Up to five ``(file, row)`` positions (0-based rows within the
            file) of cells with PII; never values.
        name_hint: The kind the column's name announces, if any.
        action: ``mask``, ``hash``, ``drop``, ``allow``, ``block`` or ``none``
            (found and not handled).
    """

    column: str
    kinds: dict[str, int]
    rows: int
    examples: list[tuple[str, int]]
    name_hint: str | None
    action: str


@dataclass(frozen=True)
class PiiReport:
    """The PII findings of one dataset version; stored with it.

    Attributes:
        columns: Columns with findings or with an explicit transforming policy.
    """

    columns: list[ColumnFinding]

    @property
    def unhandled(self) -> bool:
        """Whether PII was found where no policy says what to do."""
        return any(c.rows and c.action == "none" for c in self.columns)

    @property
    def blocked(self) -> list[str]:
        """Columns with PII under ``block``: the version must be refused."""
        return [c.column for c in self.columns if c.rows and c.action == "block"]

    def summary(self) -> str:
        """Human-readable lines, counts and actions only."""
        found = [c for c in self.columns if c.rows]
        if not self.columns:
            return "No PII found."
        lines = [f"PII found in {len(found)} column(s)."]
        if self.blocked:
            lines.append(f"Blocked: {', '.join(self.blocked)}.")
        if self.unhandled:
            lines.append("Some PII is not handled by any policy.")
        for c in self.columns:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(c.kinds.items()))
            hint = f", name suggests {c.name_hint}" if c.name_hint else ""
            lines.append(
                f"  {c.column}: {c.rows} cell(s) ({kinds or 'none detected'}{hint}) -> {c.action}"
            )
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as JSON text."""
        return json.dumps({"columns": [asdict(c) for c in self.columns]}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PiiReport:
        """Read what :meth:`to_json` wrote.

        Raises:
            InvalidInput: The text is not a PII report.
        """
        try:
            columns = [
                ColumnFinding(
                    column=str(c["column"]),
                    kinds={str(k): int(n) for k, n in c["kinds"].items()},
                    rows=int(c["rows"]),
                    examples=[(str(f), int(r)) for f, r in c["examples"]],
                    name_hint=c["name_hint"],
                    action=str(c["action"]),
                )
                for c in json.loads(text)["columns"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"not a PII report: {exc}") from None
        return cls(columns)

    @staticmethod
    def merge(reports: Iterable[PiiReport]) -> PiiReport:
        """One report from several, e.g. one scanner per file; ``block`` and ``none`` win."""
        merged: dict[str, ColumnFinding] = {}
        for report in reports:
            for c in report.columns:
                old = merged.get(c.column)
                if old is None:
                    merged[c.column] = c
                    continue
                actions = {old.action, c.action}
                action = next((a for a in ("block", "none") if a in actions), old.action)
                merged[c.column] = ColumnFinding(
                    column=c.column,
                    kinds=dict(Counter(old.kinds) + Counter(c.kinds)),
                    rows=old.rows + c.rows,
                    examples=(old.examples + c.examples)[:_MAX_EXAMPLES],
                    name_hint=old.name_hint or c.name_hint,
                    action=action,
                )
        return PiiReport(list(merged.values()))


# --- vectorised scanning --------------------------------------------------------------------


def _is_text(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype))


def _bools(arr: pa.Array) -> np.ndarray:
    if arr.null_count:
        arr = arr.fill_null(False)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def _match(values: pa.Array, pattern: str) -> np.ndarray:
    return _bools(pc.match_substring_regex(values, pattern))


def _blocks(values: pa.Array, rows: int) -> tuple[pa.Array, np.ndarray]:
    """Each run of ``rows`` values as one string, ``\\n`` between values."""
    if values.null_count:  # read null slots as their (normally empty) bytes: no copy
        values = pa.Array.from_buffers(
            values.type, len(values), [None, *values.buffers()[1:3]], offset=values.offset
        )
    offsets = np.append(np.arange(0, len(values), rows), len(values)).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), values)
    return pc.binary_join(lists, pa.scalar("\n", values.type)), offsets


def _text_bytes(values: pa.Array) -> int:
    width = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(values.buffers()[1], dtype=width)
    return int(offsets[values.offset + len(values)] - offsets[values.offset])


def _candidate_rows(columns: list[pa.Array]) -> list[np.ndarray]:
    """Rows of each text array that may hold PII: those of blocks where the union matches.

    One kernel call covers all arrays: compiling the union and warming its DFA
    costs about a millisecond a call, as much as scanning a megabyte. Blocks
    are small, so the rows of a hit block are few enough to match per row.
    """
    found = [np.empty(0, dtype=np.int64) for _ in columns]
    firsts: dict[pa.DataType, list[tuple[int, pa.Array, np.ndarray]]] = {}
    for i, values in enumerate(columns):
        if len(values) and values.null_count < len(values):
            per_row = max(1, _text_bytes(values) // len(values))
            rows = min(1024, max(1, _BLOCK_BYTES // per_row))
            firsts.setdefault(values.type, []).append((i, *_blocks(values, rows)))
    for group in firsts.values():
        hits = _match(pa.concat_arrays([joined for _, joined, _ in group]), _UNION)
        start = 0
        for i, joined, offsets in group:
            hit, start = hits[start : start + len(joined)], start + len(joined)
            if hit.any():
                found[i] = np.flatnonzero(np.repeat(hit, np.diff(offsets)))
    return found


@dataclass(frozen=True, slots=True)
class _Hits:
    positions: np.ndarray  # indices of values with any PII
    kinds: dict[str, np.ndarray]  # kind -> bool, aligned with positions
    residual: pa.Array  # the transformed values at positions


# --- scanner --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    index: int
    name: str
    action: str  # mask | hash | drop | allow | block | none
    hint: str | None
    whole: bool  # cells with nothing detected are transformed whole (explicit policy, hint)
    scan: bool  # a text column without a name hint: pattern detection
    explicit: bool


@dataclass
class _Tally:
    kinds: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    examples: list[tuple[str, int]] = field(default_factory=list)


class PiiScanner:
    """Detects PII in record batches and applies a policy to them, one batch at a time.

    One scanner serves all table files of a version (same schema); row
    positions in the report are 0-based within each file.

    Which action a column gets: a per-column policy; else ``drop`` if the
    column is in ``drop_columns``; else the default. A default ``drop`` cannot
    be decided mid-stream for batches already written, so under it only
    name-hint columns and ``drop_columns`` are dropped, and PII found in any
    other column is reported as ``block`` (the version is refused rather than
    stored with PII the user asked to drop); run :func:`detect_columns` first
    and pass its result as ``drop_columns``.

    Under ``mask`` and ``hash`` each detected value inside a cell is replaced
    (``[EMAIL]`` or ``pii_`` + 20 hex digits of its HMAC-SHA256). Cells of
    name-hint columns, and cells where nothing was detected in a column with
    an explicit per-column ``mask``/``hash``, are replaced whole
    (``[PERSON_NAME]``, ``[REDACTED]``, or the HMAC of the exact cell text).

    Args:
        schema: The schema of every batch.
        policy: The policy, from :func:`parse_policy`.
        hmac_key: Key for ``hash`` tokens; at least 16 bytes when anything may be hashed.
        drop_columns: Columns to drop (from a detect-only pre-pass).

    Raises:
        InvalidInput: The policy or ``drop_columns`` names a column the schema
            lacks, or the key is too short.
    """

    def __init__(
        self,
        schema: pa.Schema,
        policy: PiiPolicy,
        *,
        hmac_key: bytes,
        drop_columns: Collection[str] = (),
    ) -> None:
        names = list(schema.names)
        for what, wanted in (("PII policy", policy.columns), ("drop_columns", drop_columns)):
            missing = sorted(set(wanted) - set(names))
            if missing:
                raise InvalidInput(
                    f"{what} names column(s) {', '.join(missing)} that the table lacks; "
                    f"its columns are: {', '.join(names)}"
                )
        self.schema = schema
        self._plans = [self._plan(i, f, policy, set(drop_columns)) for i, f in enumerate(schema)]
        if any(p.action == "hash" for p in self._plans) and len(hmac_key) < 16:
            raise InvalidInput("hmac_key must be at least 16 bytes to hash PII")
        self._key = bytes(hmac_key)
        self._tokens: dict[str, str] = {}
        self._tallies = {p.name: _Tally() for p in self._plans}
        self._offsets: dict[str, int] = {}
        self._changed = False
        fields = [self._out_field(f, p) for f, p in zip(schema, self._plans, strict=True)]
        self._out_types = [f.type for f in fields]
        kept = [f for f, p in zip(fields, self._plans, strict=True) if p.action != "drop"]
        self.output_schema = pa.schema(kept, metadata=schema.metadata)

    @staticmethod
    def _plan(index: int, f: pa.Field, policy: PiiPolicy, drops: set[str]) -> _Plan:
        hint = _name_hint(f.name)
        explicit = policy.columns.get(f.name)
        if explicit is not None:
            action = explicit
        elif f.name in drops:
            action = "drop"
        elif policy.default == "drop":
            action = "drop" if hint else "block"
        else:
            action = policy.default or "none"
        dtype = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        whole = hint is not None or explicit in ("mask", "hash")
        return _Plan(
            index,
            f.name,
            action,
            hint,
            whole,
            _is_text(dtype) and hint is None,
            explicit is not None,
        )

    @staticmethod
    def _out_field(f: pa.Field, plan: _Plan) -> pa.Field:
        if plan.action not in ("mask", "hash") or not (plan.whole or plan.scan):
            return f
        dtype = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        return f.with_type(pa.large_string() if pa.types.is_large_string(dtype) else pa.string())

    @property
    def changed(self) -> bool:
        """Whether any value was transformed or any column dropped so far."""
        return self._changed

    def process(self, batch: pa.RecordBatch, *, file: str) -> pa.RecordBatch:
        """Detect PII in one batch, record it, and return the batch the policy allows to store.

        Args:
            batch: The next batch of ``file``; its schema must be the scanner's.
            file: The table file it comes from (named in report examples).

        Returns:
            The batch to store, with :attr:`output_schema`.

        Raises:
            InvalidInput: The batch's schema differs from the scanner's.
        """
        if not batch.schema.equals(self.schema, check_metadata=False):
            raise InvalidInput(
                f"batch of {file!r} does not have the schema the scanner was made for"
            )
        offset = self._offsets.get(file, 0)
        scanned = [p for p in self._plans if p.scan]
        texts = [_text_values(batch.column(p.index)) for p in scanned]
        candidates = dict(zip((p.index for p in scanned), _candidate_rows(texts), strict=True))
        out = []
        for plan in self._plans:
            column, hit_rows, kinds = self._column(
                plan, batch.column(plan.index), candidates.get(plan.index)
            )
            tally = self._tallies[plan.name]
            tally.kinds.update(kinds)
            tally.rows += len(hit_rows)
            room = _MAX_EXAMPLES - len(tally.examples)
            tally.examples.extend((file, offset + int(r)) for r in hit_rows[:room])
            if plan.action == "drop":
                self._changed = True
            else:
                out.append(column)
        self._offsets[file] = offset + batch.num_rows
        return pa.RecordBatch.from_arrays(out, schema=self.output_schema)

    def report(self) -> PiiReport:
        """The findings so far, in schema order."""
        columns = [
            ColumnFinding(
                column=p.name,
                kinds=dict(t.kinds),
                rows=t.rows,
                examples=list(t.examples),
                name_hint=p.hint,
                action=p.action,
            )
            for p in self._plans
            if (t := self._tallies[p.name]).rows
            or p.action == "drop"
            or (p.explicit and p.action in ("mask", "hash"))
        ]
        return PiiReport(columns)

    # One column of one batch: (array to store, rows with PII, cells per kind).
    def _column(
        self, plan: _Plan, col: pa.Array, candidates: np.ndarray | None
    ) -> tuple[pa.Array, np.ndarray, dict[str, int]]:
        transform = plan.action in ("mask", "hash")
        out_type = self._out_types[plan.index]
        if plan.hint is not None:
            rows = np.flatnonzero(_bools(col.is_valid()))
            kinds = {plan.hint: len(rows)} if len(rows) else {}
            if transform:
                col = self._whole(_as_text(col, out_type), plan.action, f"[{plan.hint.upper()}]")
                self._changed |= bool(len(rows))
            return col, rows, kinds
        if candidates is None:
            if transform and plan.whole:
                col = self._whole(_as_text(col, out_type), plan.action, _REDACTED)
                self._changed |= col.null_count < len(col)
            return col, np.empty(0, dtype=np.int64), {}
        dictionary = pa.types.is_dictionary(col.type)
        values = _text_values(col)
        hits = self._scan(values, candidates, "hash" if plan.action == "hash" else "mask")
        hit = np.zeros(len(values), dtype=bool)
        hit[hits.positions] = True
        if dictionary:
            valid = _bools(col.is_valid())
            codes = col.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            entry = np.zeros((len(hits.kinds) + 1, len(values) + 1), dtype=bool)
            entry[0, :-1] = hit
            for i, mask in enumerate(hits.kinds.values(), 1):
                entry[i, hits.positions[mask]] = True
            per_row = entry[:, np.where(valid, codes, len(values))]  # the extra entry: null rows
            rows = np.flatnonzero(per_row[0])
            kinds = {k: int(per_row[i].sum()) for i, k in enumerate(hits.kinds, 1)}
        else:
            rows = hits.positions
            kinds = {k: int(v.sum()) for k, v in hits.kinds.items()}
        if not transform:
            return col, rows, {k: n for k, n in kinds.items() if n}
        new = values
        if len(hits.positions):
            new = pc.replace_with_mask(values, pa.array(hit), hits.residual)
        if plan.whole:
            rest = _bools(values.is_valid()) & ~hit
            if rest.any():
                whole = self._whole(values.filter(pa.array(rest)), plan.action, _REDACTED)
                new = pc.replace_with_mask(new, pa.array(rest), whole)
        if dictionary:
            new = new.take(col.indices)
        self._changed |= bool(len(rows)) or (plan.whole and new.null_count < len(new))
        return new.cast(out_type), rows, {k: n for k, n in kinds.items() if n}

    def _whole(self, text: pa.Array, action: str, marker: str) -> pa.Array:
        if action == "mask":
            return pc.if_else(
                text.is_valid(), pa.scalar(marker, text.type), pa.scalar(None, text.type)
            )
        encoded = text.dictionary_encode()
        tokens = [self._token(v) for v in encoded.dictionary.to_pylist()]
        return pa.array(tokens, text.type).take(encoded.indices)

    def _token(self, value: str) -> str:
        token = self._tokens.get(value)
        if token is None:
            if len(self._tokens) >= _CACHE_MAX:
                self._tokens.clear()
            digest = hmac.digest(self._key, value.encode(), hashlib.sha256)
            token = self._tokens[value] = "pii_" + digest.hex()[:20]
        return token

    def _scan(self, values: pa.Array, positions: np.ndarray, mode: str) -> _Hits:
        """Find, validate and replace (markers or tokens) the PII in text values."""
        if not len(positions):
            return _Hits(positions, {}, values[:0])
        residual = values.take(positions)
        # Many candidates (dense PII): a detector absent from all of them is skipped after
        # one pass over them joined, cheaper than a pass per row. Replacements never
        # create matches, so the candidates as they came are enough.
        joined = _blocks(residual, 1 << 16)[0] if len(positions) > 4096 else None
        kinds: dict[str, np.ndarray] = {}
        for det in _DETECTORS:
            if joined is not None and not _match(joined, det.pattern).any():
                continue
            found = _match(residual, det.pattern)
            if not found.any():
                continue
            if det.accept is None and mode == "mask":
                residual = pc.replace_substring_regex(residual, det.pattern, det.marker)
            else:
                rows = np.flatnonzero(found)
                texts, ok = self._substitute(det, residual.take(rows).to_pylist(), mode)
                found[:] = False
                found[rows[ok]] = True
                if ok.any():
                    changed = pa.array(
                        [t for t, good in zip(texts, ok, strict=True) if good], residual.type
                    )
                    residual = pc.replace_with_mask(residual, pa.array(found), changed)
            kinds[det.kind] = kinds[det.kind] | found if det.kind in kinds else found
        any_hit = (
            np.logical_or.reduce(list(kinds.values())) if kinds else np.zeros(len(positions), bool)
        )
        keep = np.flatnonzero(any_hit)
        return _Hits(positions[keep], {k: v[keep] for k, v in kinds.items()}, residual.take(keep))

    def _substitute(
        self, det: _Detector, texts: list[str], mode: str
    ) -> tuple[list[str], np.ndarray]:
        """Python pass over candidate cells: validate each match, replace the valid ones."""
        count = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal count
            text = match.group(0)
            span = (0, len(text)) if det.accept is None else det.accept(text)
            if span is None:
                return text
            count += 1
            start, end = span
            value = text[start:end]
            new = det.marker if mode == "mask" else self._token(det.normalise(value))
            return text[:start] + new + text[end:]

        out, ok = [], np.zeros(len(texts), dtype=bool)
        for i, text in enumerate(texts):
            count = 0
            out.append(det.py.sub(replace, text))
            ok[i] = count > 0
        return out, ok


def _text_values(col: pa.Array) -> pa.Array:
    """The text a column's detection reads: a dictionary's values, or the column itself."""
    return col.dictionary if pa.types.is_dictionary(col.type) else col


def _as_text(col: pa.Array, out_type: pa.DataType) -> pa.Array:
    try:
        return col.cast(out_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in col.to_pylist()], out_type)


def detect_columns(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> set[str]:
    """Columns with any finding (patterns or a name hint with values), detecting only.

    The pre-pass for a default ``drop`` policy: pass the result to
    :class:`PiiScanner` as ``drop_columns``.

    Args:
        schema: The schema of every batch.
        batches: The batches of all table files of the version.

    Returns:
        The names of the columns where PII was found.
    """
    scanner = PiiScanner(schema, PiiPolicy(), hmac_key=b"")
    for batch in batches:
        scanner.process(batch, file="")
    return {c.column for c in scanner.report().columns if c.rows}
