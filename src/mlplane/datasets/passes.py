"""What the table pass learned about a version's table files (PII, contract, profile).

Apart from :mod:`mlplane.datasets.pipeline`, which computes it with pyarrow, so an
add without tables builds an empty result without loading any of that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlplane.datasets.contracts import ContractReport
    from mlplane.datasets.pii import PiiReport
    from mlplane.datasets.profile_data import TableProfile


@dataclass
class TableResult:
    """What the pass learned about one table file."""

    profile: TableProfile
    pii: PiiReport
    stored_path: Path
    """The file to store: the original, or the transformed copy in the work folder."""
    replaced: bool = False


@dataclass
class PassResult:
    tables: dict[str, TableResult] = field(default_factory=dict)
    quality: ContractReport | None = None

    @property
    def pii_unhandled(self) -> bool:
        return any(t.pii.unhandled for t in self.tables.values())

    @property
    def pii_blocked(self) -> list[tuple[str, str]]:
        return [(rel, col) for rel, t in self.tables.items() for col in t.pii.blocked]
