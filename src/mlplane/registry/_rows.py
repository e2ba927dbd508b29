"""Rows → entities for the registry."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from mlplane.registry import policy as policy_mod
from mlplane.registry.entities import ModelFile, ModelVersion, RegisteredModel
from mlplane.registry.tables import (
    ModelAliasRow,
    ModelRow,
    ModelTagRow,
    ModelVersionRow,
    RegisteredModelTagRow,
)


def version_entity(s: Any, model: ModelRow, row: ModelVersionRow, project: str) -> ModelVersion:
    info = json.loads(row.info)
    aliases = sorted(
        s.scalars(
            select(ModelAliasRow.alias).where(
                ModelAliasRow.model_id == model.id, ModelAliasRow.version == row.version
            )
        )
    )
    tags = dict(
        s.execute(
            select(ModelTagRow.key, ModelTagRow.value).where(ModelTagRow.version_id == row.id)
        ).all()
    )
    return ModelVersion(
        name=model.name,
        version=row.version,
        project=project,
        flavor=row.flavor,
        format=str(info.get("format", "")),
        run_id=row.run_id,
        files=[ModelFile(f["path"], f["size"], f["sha256"]) for f in json.loads(row.files)],
        manifest_sha256=row.manifest_sha256,
        scan_verdict=row.scan_verdict,
        scan_override=row.scan_override,
        signed_by=row.signed_by,
        metrics=json.loads(row.metrics),
        params=json.loads(row.params),
        signature=json.loads(row.signature) if row.signature else None,
        onnx=json.loads(row.onnx) if row.onnx else None,
        aliases=aliases,
        tags=tags,
        description=row.description,
        card=json.loads(row.card),
        size=row.size,
        created_at=row.created_at,
        created_by=row.created_by,
        pickle=bool(info.get("pickle", False)),
        stage=row.stage or "None",
        source=row.source,
        logged_model_id=row.logged_model_id,
        updated_at=row.updated_at,
    )


def model_entity(s: Any, model: ModelRow, project: str) -> RegisteredModel:
    latest = s.scalar(
        select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model.id)
    )
    aliases = dict(
        s.execute(
            select(ModelAliasRow.alias, ModelAliasRow.version).where(
                ModelAliasRow.model_id == model.id
            )
        ).all()
    )
    return RegisteredModel(
        name=model.name,
        project=project,
        description=model.description,
        owner=model.owner,
        created_at=model.created_at,
        updated_at=model.updated_at,
        latest_version=latest,
        aliases=aliases,
        protected_aliases=json.loads(model.protected_aliases),
        policy=policy_mod.parse_policy(model.policy),
        tags=dict(
            s.execute(
                select(RegisteredModelTagRow.key, RegisteredModelTagRow.value).where(
                    RegisteredModelTagRow.model_id == model.id
                )
            ).all()
        ),
    )
