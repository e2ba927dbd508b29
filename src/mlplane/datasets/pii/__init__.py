"""PII detection and masking over Arrow record batches, one batch at a time.

Why it is built this way:

* **Streaming.** The service passes every batch of every table file of a
  version through one :class:`PiiScanner` before anything is written; the
  batches it returns are what gets stored, so unmasked values never reach the
  store when a masking policy applies, and memory does not grow with the data.
* **Clean data costs almost nothing.** The values of every text column of a
  batch are joined in blocks of about 4 KiB, ``\n`` between values (no pattern
  matches ``\n``, so no match spans two cells), and one RE2 pass
  (``pyarrow.compute``) of the union of all detector patterns over all of them
  tells which blocks can hold PII; one call, because compiling the union and
  warming its DFA costs as much as scanning a megabyte. Clean blocks are done.
  The rows of hit blocks are matched per detector, per row, still in Arrow;
  only those matches reach Python (Luhn, mod-97, IPv6 parsing, HMAC), and a
  cell that is one match is hashed without a Python regex pass.
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

from typing import TYPE_CHECKING

from mlplane._lazy import lazy_attrs

# Loaded on first use (PEP 562): reading a version's PII report or policy needs only the
# light modules, not the scanner's pyarrow and compiled patterns.
_WHERE = {
    # The private names are for the tests, which check the detectors directly.
    "_DETECTORS": "_detectors",
    "_IBAN_LENGTHS": "_detectors",
    "_luhn": "_detectors",
    "_name_hint": "_detectors",
    "HINT_KINDS": "_detectors",
    "KINDS": "_detectors",
    "PATTERN_KINDS": "_detectors",
    "POLICIES": "_policy",
    "PiiPolicy": "_policy",
    "parse_policy": "_policy",
    "ColumnFinding": "_report",
    "PiiReport": "_report",
    "PiiScanner": "_scanner",
    "detect_columns": "_scanner",
}

if TYPE_CHECKING:
    from mlplane.datasets.pii._detectors import HINT_KINDS, KINDS, PATTERN_KINDS
    from mlplane.datasets.pii._policy import POLICIES, PiiPolicy, parse_policy
    from mlplane.datasets.pii._report import ColumnFinding, PiiReport
    from mlplane.datasets.pii._scanner import PiiScanner, detect_columns


__getattr__ = lazy_attrs(__name__, _WHERE)


__all__ = [
    "HINT_KINDS",
    "KINDS",
    "PATTERN_KINDS",
    "POLICIES",
    "ColumnFinding",
    "PiiPolicy",
    "PiiReport",
    "PiiScanner",
    "detect_columns",
    "parse_policy",
]
