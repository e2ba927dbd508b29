"""Everything registration makes before it stores: files, signature, ONNX, environment, scan."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplane.registry import integrity
from mlplane.registry.entities import META_FILE, ModelFile
from mlplane.registry.export import to_onnx
from mlplane.registry.flavors import detect
from mlplane.registry.scan import ScanReport, scan_path
from mlplane.registry.signature import Signature, infer_signature, to_frame

EXAMPLE_FILE = "input_example.parquet"
LOCK_FILE = "requirements.lock"


@dataclass
class Built:
    flavor: str
    info: dict[str, Any]
    signature: Signature | None
    onnx: dict[str, Any] | None
    environment: dict[str, Any]
    scan: ScanReport
    files: list[ModelFile]


def write_folder(
    model: Any, folder: Path, input_example: Any, *, sensitive: Sequence[str] | None = None
) -> None:
    """Save ``model`` into ``folder`` with everything a version carries (no scan yet);
    ``sensitive`` names signature columns to mark (see :meth:`Signature.with_sensitive`)."""
    from mlplane.errors import InvalidInput

    if sensitive and input_example is None:
        raise InvalidInput(
            "sensitive fields are marked in the signature, which is inferred from the "
            "input example: pass input_example too"
        )
    folder.mkdir(parents=True, exist_ok=True)
    flavor = detect(model)
    signature = onnx = None
    frame = None
    if input_example is not None and getattr(input_example, "ndim", 2) > 2:
        # A tensor example (images, sequences): signature from the array itself.
        info = flavor.save(model, folder / "model", input_example=input_example)
        signature = infer_signature(input_example, flavor.predict(model, input_example))
    else:
        frame = to_frame(input_example, None) if input_example is not None else None
        info = flavor.save(model, folder / "model", input_example=frame)
    if frame is not None:
        output = flavor.predict(model, frame)
        signature = infer_signature(frame, output)
        frame.to_parquet(folder / EXAMPLE_FILE, index=False)
        onnx = to_onnx(model, flavor, frame, folder / "onnx")
    if sensitive and signature is not None:
        signature = signature.with_sensitive(sensitive)
    env = environment()
    (folder / LOCK_FILE).write_text(
        f"# python {env['python']}\n" + "".join(f"{n}=={v}\n" for n, v in env["packages"].items())
    )
    meta = {
        "flavor": flavor.name,
        "info": info,
        "signature": signature.to_dict() if signature is not None else None,
        "onnx": onnx,
        "environment": env,
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str))


def read_folder(folder: Path) -> Built:
    """Describe a version folder (made by :func:`write_folder`, possibly elsewhere) and scan
    every file in it: what the folder claims is checked, never trusted."""
    from mlplane.errors import InvalidInput
    from mlplane.registry.flavors import get

    try:
        meta = json.loads((folder / META_FILE).read_text())
        flavor = get(str(meta["flavor"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"not a model version folder ({META_FILE} unreadable: {exc})") from None
    sig = meta.get("signature")
    return Built(
        flavor=flavor.name,
        info=dict(meta.get("info") or {}),
        signature=Signature.from_json(json.dumps(sig)) if sig else None,
        onnx=meta.get("onnx"),
        environment=dict(meta.get("environment") or {}),
        scan=scan_path(folder),
        files=integrity.list_files(folder),
    )


def environment() -> dict[str, Any]:
    """The interpreter and the exact version of every installed distribution."""
    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.name  # the distribution's own name (Name in its metadata)
        if name:
            packages[name.lower()] = dist.version
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "packages": dict(sorted(packages.items())),
    }
