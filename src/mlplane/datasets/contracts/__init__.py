"""Data-quality contracts, checked as a gate in one streaming pass.

A contract (YAML, JSON or a mapping) lists expectations per column (``type``,
``not_null``, ``unique``, ``between``, ``max_null_fraction``, ``in_set``,
``regex``, ``freshness``) and per table (``row_count`` and custom ``sql``).
:func:`load_contract` turns it into a :class:`Contract`, or raises
``InvalidInput`` naming the offending key and what is allowed.

Why streaming: a dataset version can be far larger than memory, and the
service already reads each table file once, batch by batch, to profile it.
:class:`ContractCheck` rides on the same record batches instead of reading
the data again or loading it whole. Each expectation folds a batch into state
whose size does not depend on the row count (counts, a running min/max or
newest value, the first few failing rows), computed by ``pyarrow.compute``
kernels over whole arrays, never a Python loop per row. Two exceptions:

* ``unique`` keeps one 64-bit key per non-null row (plus in-batch positions
  for batches with nulls) and sorts the keys at the end. Keys are the values
  themselves for integers, floats, booleans and times (exact), and DuckDB's 64-bit
  ``hash`` for everything else, so among ten million distinct strings a false
  duplicate has a chance of about 3 in a million. The final sort briefly
  needs about twice the keys' memory.
* custom ``sql`` runs after the pass, in DuckDB over the stored files, with
  two threads, a memory limit, and no file access beyond those files.

Failing data never raises: :meth:`ContractCheck.finish` returns a
:class:`ContractReport` and the caller decides (the service raises
``QualityGateFailed`` when ``report.passed`` is false).

The package: ``_kinds`` (expectation kinds and shared type helpers),
``_model`` (parsing into :class:`Contract`), ``_columns`` (the streaming
state of each column expectation), ``_sql`` (custom SQL in DuckDB),
``_checks`` (:class:`ContractCheck`) and ``_report`` (the results).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlplane._lazy import lazy_attrs

# Loaded on first use (PEP 562): showing a stored report needs only ``_report``, not
# the checks' pyarrow and DuckDB.
_WHERE = {
    "ContractCheck": "_checks",
    "COLUMN_KINDS": "_kinds",
    "SEVERITIES": "_kinds",
    "SQL_FORMATS": "_kinds",
    "TABLE_KINDS": "_kinds",
    "Contract": "_model",
    "Expectation": "_model",
    "load_contract": "_model",
    "ContractReport": "_report",
    "ExpectationResult": "_report",
}

if TYPE_CHECKING:
    from mlplane.datasets.contracts._checks import ContractCheck
    from mlplane.datasets.contracts._kinds import (
        COLUMN_KINDS,
        SEVERITIES,
        SQL_FORMATS,
        TABLE_KINDS,
    )
    from mlplane.datasets.contracts._model import Contract, Expectation, load_contract
    from mlplane.datasets.contracts._report import ContractReport, ExpectationResult


__getattr__ = lazy_attrs(__name__, _WHERE)


__all__ = [
    "COLUMN_KINDS",
    "SEVERITIES",
    "SQL_FORMATS",
    "TABLE_KINDS",
    "Contract",
    "ContractCheck",
    "ContractReport",
    "Expectation",
    "ExpectationResult",
    "load_contract",
]
