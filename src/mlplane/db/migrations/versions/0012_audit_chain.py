"""The hash-chained audit log: prev_hash/hash on every event, the chain head, signed
checkpoints and the checkpoint key. Existing events are renumbered gap-free and chained
here, in sequence order.

Revision ID: 0012_audit_chain
Revises: 0011_identities
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mlplane.security.audit import GENESIS, event_hash

revision = "0012_audit_chain"
down_revision = "0011_identities"
branch_labels = None
depends_on = None

_PAGE = 1000


def upgrade() -> None:
    op.add_column(
        "audit_events",
        sa.Column("prev_hash", sa.String(length=64), nullable=False, server_default=""),
    )
    op.add_column(
        "audit_events", sa.Column("hash", sa.String(length=64), nullable=False, server_default="")
    )
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=80), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_checkpoints")),
    )
    op.create_table(
        "audit_keys",
        sa.Column("key_id", sa.String(length=80), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("wrapped_private", sa.LargeBinary(length=64), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_audit_keys")),
    )
    seq, last = _chain_existing(op.get_bind())
    op.execute(
        sa.text("INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, :seq, :hash)").bindparams(
            seq=seq, hash=last
        )
    )


def _chain_existing(conn: sa.Connection) -> tuple[int, str]:
    """Renumber old events 1..n and chain them, a page at a time. Each new number is at most
    the old one and every smaller old number is already renumbered below it, so the
    primary key never collides on the way."""
    events = sa.table(
        "audit_events",
        *(
            sa.column(c)
            for c in (
                "seq", "time", "actor", "action", "resource", "project_id", "source",
                "outcome", "details", "prev_hash", "hash",
            )
        ),
    )  # fmt: skip
    new_seq, prev, old_last = 0, GENESIS, 0
    while True:
        rows = conn.execute(
            sa.select(events).where(events.c.seq > old_last).order_by(events.c.seq).limit(_PAGE)
        ).all()
        for row in rows:
            new_seq += 1
            fields = {**row._mapping, "seq": new_seq, "prev_hash": prev}
            prev = event_hash(fields)
            conn.execute(
                events.update()
                .where(events.c.seq == row.seq)
                .values(seq=new_seq, prev_hash=fields["prev_hash"], hash=prev)
            )
        if len(rows) < _PAGE:
            return new_seq, prev
        old_last = rows[-1].seq


def downgrade() -> None:
    op.drop_table("audit_keys")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_chain_head")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
