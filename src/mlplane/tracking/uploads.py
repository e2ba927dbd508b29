"""Multipart uploads of one large artifact file (MLflow's ``mpu/create``/``complete``/``abort``).

Each part is stored as its own blob the moment it arrives, so parts can be sent
in parallel and a failed part is simply sent again; completing the upload
streams the parts, in order, into the file's blob and records it like any
other artifact. The database holds the uploads in progress, so any server
worker can take any part. A part is authorized by the upload id alone (it is
unguessable, like a presigned URL), because MLflow's client sends parts with
plain ``requests.put`` and no credentials; creating and completing an upload
check the caller's permission on the run or model.

An upload never completed nor aborted (the client crashed) would keep its parts forever:
``mlplane gc`` drops uploads older than ``upload_expiry_s`` (``expire_uploads``), and their
parts' blobs then go like any orphan blob.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Literal

from sqlalchemy import delete, select

from mlplane.db.engine import now_ms
from mlplane.errors import InvalidInput, NotFound
from mlplane.security import Principal
from mlplane.tracking import validation as check
from mlplane.tracking.artifacts import ArtifactsMixin
from mlplane.tracking.entities import ArtifactInfo
from mlplane.tracking.model_artifacts import ModelArtifactsMixin
from mlplane.tracking.tables import ArtifactRow, ArtifactUploadPartRow, ArtifactUploadRow

Owner = Literal["run", "model"]
MAX_PARTS = 10_000


class UploadsMixin(ModelArtifactsMixin, ArtifactsMixin):
    def _check_owner(self, p: Principal, owner: str, owner_id: str) -> None:
        with self._guard.unit(write=False) as s:
            if owner == "run":
                self._writable_run(s, p, owner_id, "artifact.write")
            else:
                self._writable_model(s, p, owner_id, "logged-model.artifact.write")

    def create_upload(
        self, p: Principal, owner: Owner, owner_id: str, path: str, num_parts: int
    ) -> str:
        """Start a multipart upload of the file ``path`` of a run or model; returns its id."""
        if owner not in ("run", "model"):
            raise InvalidInput(f"uploads go to a run or a model, not {owner!r}")
        clean = check.artifact_path(path)
        if not 1 <= num_parts <= MAX_PARTS:
            raise InvalidInput(f"num_parts must be between 1 and {MAX_PARTS}, got {num_parts}")
        self._check_owner(p, owner, owner_id)
        upload_id = uuid.uuid4().hex
        with self._guard.unit(write=True) as s:
            s.add(
                ArtifactUploadRow(
                    id=upload_id,
                    owner_kind=owner,
                    owner_id=owner_id,
                    path=clean,
                    num_parts=num_parts,
                    created_by=p.name,
                    created_at=now_ms(),
                )
            )
        return upload_id

    def _upload(self, upload_id: str) -> ArtifactUploadRow:
        with self._db.read() as s:
            row = s.get(ArtifactUploadRow, upload_id) if isinstance(upload_id, str) else None
            if row is None:
                raise NotFound(f"multipart upload {upload_id!r} does not exist (or is finished)")
            s.expunge(row)
            return row

    def check_upload_part(self, upload_id: str, part_number: int) -> None:
        """Refuse a part for an unknown upload or out of range, before its bytes are read:
        part uploads carry no credentials (the upload id is the capability)."""
        up = self._upload(upload_id)
        if not 1 <= part_number <= up.num_parts:
            raise InvalidInput(
                f"part_number must be between 1 and {up.num_parts} for this upload, "
                f"got {part_number}"
            )

    def put_upload_part(
        self, upload_id: str, part_number: int, source: str | os.PathLike[str]
    ) -> str:
        """Store one part (a local file); returns its digest, the part's ETag."""
        self.check_upload_part(upload_id, part_number)
        digest, size = self._blobs.put_file(source)
        with self._db.write() as s:
            if s.get(ArtifactUploadRow, upload_id) is None:
                raise NotFound(f"multipart upload {upload_id!r} was aborted or completed")
            s.merge(
                ArtifactUploadPartRow(
                    upload_id=upload_id, part_number=part_number, digest=digest, size=size
                )
            )
        return digest

    def complete_upload(
        self, p: Principal, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> ArtifactInfo:
        """Join the listed ``(part_number, etag)`` parts, in order, into the artifact file."""
        up = self._upload(upload_id)
        self._check_owner(p, up.owner_kind, up.owner_id)
        if not parts:
            raise InvalidInput("complete a multipart upload with the parts it is made of")
        with self._db.read() as s:
            stored = {
                r.part_number: r.digest
                for r in s.scalars(
                    select(ArtifactUploadPartRow).where(
                        ArtifactUploadPartRow.upload_id == upload_id
                    )
                )
            }
        ordered = sorted(parts)
        numbers = [n for n, _ in ordered]
        if len(set(numbers)) != len(numbers):
            raise InvalidInput("each part may be listed once")
        digests = []
        for number, etag in ordered:
            if number not in stored:
                raise InvalidInput(f"part {number} of upload {upload_id} was never uploaded")
            if etag and etag.strip('"') != stored[number]:
                raise InvalidInput(
                    f"part {number} of upload {upload_id}: ETag {etag!r} does not match "
                    "the part stored; upload it again"
                )
            digests.append(stored[number])
        digest, size = self._blobs.put_stream(self._joined(digests))
        if up.owner_kind == "run":
            info = self._record_run_artifact(p, up.owner_id, up.path, digest, size)
        else:
            info = self._record_model_artifact(p, up.owner_id, up.path, digest, size)
        self._drop_upload(upload_id)
        return info

    def _joined(self, digests: Sequence[str]) -> Iterator[bytes]:
        return itertools.chain.from_iterable(self._blobs.iter_chunks(d) for d in digests)

    def _record_run_artifact(
        self, p: Principal, run_id: str, path: str, digest: str, size: int
    ) -> ArtifactInfo:
        with self._guard.unit(write=True) as s:
            self._writable_run(s, p, run_id, "artifact.write")
            s.merge(
                ArtifactRow(run_id=run_id, path=path, digest=digest, size=size, created_at=now_ms())
            )
        return ArtifactInfo(path=path, is_dir=False, size=size, digest=digest)

    def abort_upload(self, p: Principal, upload_id: str) -> None:
        """Forget an upload; its parts' blobs go at garbage collection."""
        up = self._upload(upload_id)
        self._check_owner(p, up.owner_kind, up.owner_id)
        self._drop_upload(upload_id)

    def expire_uploads(self, created_before_ms: int, *, dry_run: bool = False) -> int:
        """Drop the uploads started before ``created_before_ms`` (abandoned); returns how
        many. No permission check: garbage collection, which checks for admin, calls it.
        A part or a completion that arrives for one afterwards is refused as for an aborted
        upload; a completion already joining the parts of one may fail (the same collection
        can delete old parts' blobs), never record a partial file."""
        old = select(ArtifactUploadRow.id).where(ArtifactUploadRow.created_at < created_before_ms)
        if dry_run:
            with self._db.read() as s:
                return len(s.scalars(old).all())
        with self._db.write() as s:
            s.execute(delete(ArtifactUploadPartRow).where(ArtifactUploadPartRow.upload_id.in_(old)))
            gone = s.scalars(
                delete(ArtifactUploadRow)
                .where(ArtifactUploadRow.created_at < created_before_ms)
                .returning(ArtifactUploadRow.id)
            ).all()
        return len(gone)

    def _drop_upload(self, upload_id: str) -> None:
        with self._db.write() as s:
            s.execute(
                delete(ArtifactUploadPartRow).where(ArtifactUploadPartRow.upload_id == upload_id)
            )
            s.execute(delete(ArtifactUploadRow).where(ArtifactUploadRow.id == upload_id))
