"""A re-add of an unchanged folder reads one row: the tree cache (source, policy) ->
(digest of every file's path, size, mtime and inode; the version it became). The hash
cache's digest index goes: nothing looks files up by digest, and keeping it up to date
cost a random index write per file on every add.

Revision ID: 0015_tree_cache
Revises: 0014_input_schema
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_tree_cache"
down_revision = "0014_input_schema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tree_cache",
        sa.Column("key", sa.String(2100), nullable=False),
        sa.Column("listing", sa.String(80), nullable=False),
        sa.Column("version_digest", sa.String(80), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_tree_cache")),
    )
    op.drop_index("ix_hash_cache_digest", table_name="hash_cache")


def downgrade() -> None:
    op.create_index("ix_hash_cache_digest", "hash_cache", ["digest"], unique=False)
    op.drop_table("tree_cache")
