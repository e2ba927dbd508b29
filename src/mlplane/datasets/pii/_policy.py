"""PII policies: what to do, per column or by default, where PII is found."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlplane.errors import InvalidInput

POLICIES = ("block", "mask", "hash", "drop", "allow")


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
            object.__setattr__(self, "default", _word(self.default))
        object.__setattr__(self, "columns", {c: _word(w) for c, w in self.columns.items()})

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
