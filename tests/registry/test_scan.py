"""The static model scanner: a malicious corpus caught, real models passed, nothing ever loaded."""

from __future__ import annotations

import io
import json
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlplane.registry.scan import (
    MAX_DEPTH,
    Finding,
    ScanReport,
    _pickle,
    _source,
    judge,
    scan_bytes,
    scan_path,
)
from tests.registry import _payloads as pl


def flagged(report: ScanReport) -> list[str]:
    return [f"{f.module}.{f.name}" for f in report.findings if f.verdict != "safe"]


# -- the malicious corpus -------------------------------------------------------------------------


@pytest.mark.parametrize("payload", pl.MALICIOUS, ids=[p.name for p in pl.MALICIOUS])
def test_malicious_payload_is_caught_and_named(payload: pl.Payload) -> None:
    report = scan_bytes(payload.build(), name=payload.filename)
    assert report.verdict == payload.verdict, report.summary()
    for name in payload.names:
        assert any(f.startswith(name) for f in flagged(report)), (name, report.summary())
    assert any(n in report.summary() for n in payload.names)


@pytest.mark.parametrize("payload", pl.MALICIOUS, ids=[p.name for p in pl.MALICIOUS])
def test_strict_mode_turns_every_payload_unsafe(payload: pl.Payload) -> None:
    report = scan_bytes(payload.build(), name=payload.filename, strict=True)
    assert report.verdict == "unsafe"


def test_the_scan_never_imports_what_it_reads() -> None:
    for mod in ("antigravity", "mypackage", "mypackage.helpers"):
        sys.modules.pop(mod, None)
    for payload in pl.MALICIOUS:
        scan_bytes(payload.build(), name=payload.filename)
    assert "antigravity" not in sys.modules
    assert "mypackage" not in sys.modules


def test_importlib_and_marshal_payloads_are_named_with_their_reason() -> None:
    report = scan_bytes(pl.marshal_function(), name="m.pkl")
    reasons = {f"{f.module}.{f.name}": f.reason for f in report.findings}
    assert "code objects" in reasons["marshal.loads"]
    assert "called by REDUCE" in reasons["types.FunctionType"]
    report = scan_bytes(pl.importlib_only(), name="i.pkl")
    assert report.verdict == "unsafe"
    assert report.imports == {"i.pkl": ["importlib.import_module"]}


def test_payloads_on_disk_are_caught_through_the_file_path(tmp_path: Path) -> None:
    for payload in pl.MALICIOUS:
        (tmp_path / payload.filename).write_bytes(payload.build())
    for payload in pl.MALICIOUS:
        report = scan_path(tmp_path / payload.filename)
        assert report.verdict == payload.verdict, payload.name
        assert report.files == 1 and report.bytes == (tmp_path / payload.filename).stat().st_size


def test_a_payload_in_a_torch_archive_names_the_member() -> None:
    report = scan_bytes(pl.torch_zip(pl.os_system()), name="model.pt")
    bad = [f for f in report.findings if f.verdict == "unsafe"]
    assert [f.file for f in bad] == ["model.pt::archive/data.pkl"]
    assert "model.pt::archive/data.pkl" in report.imports
    # the raw storage starts like a pickle, but a storage is never parsed
    assert not any("data/0" in f.file for f in report.findings)


def test_a_payload_two_archives_deep_is_found() -> None:
    report = scan_bytes(pl.nested_zip(pl.os_system()), name="outer.zip")
    assert report.verdict == "unsafe"
    assert any(f.file == "outer.zip::inner.zip::archive/data.pkl" for f in report.findings)


def test_archives_nested_past_the_limit_are_unknown() -> None:
    data = pl.os_system()
    for i in range(MAX_DEPTH + 1):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr(f"level{i}.zip" if i else "data.pkl", data)
        data = out.getvalue()
    report = scan_bytes(data, name="deep.zip")
    assert report.verdict == "unknown"
    assert any("too deep" in f.reason for f in report.findings)


def test_tar_archives_plain_or_compressed_are_opened(tmp_path: Path) -> None:
    import gzip
    import tarfile

    data = pl.tar_gz(pl.os_system())
    plain = gzip.decompress(data)
    for name, blob in (("m.tar.gz", data), ("m.tar", plain)):
        report = scan_bytes(blob, name=name)
        assert report.verdict == "unsafe", (name, report.summary())
        assert "os.system" in report.imports[f"{name}::model.pkl"]
        (tmp_path / name).write_bytes(blob)
        assert scan_path(tmp_path / name).verdict == "unsafe"
    assert tarfile.is_tarfile(tmp_path / "m.tar")
    report = scan_bytes(gzip.compress(pl.os_system()), name="model.pkl.gz")
    assert report.imports == {"model.pkl.gz": ["os.system"]}


def test_what_cannot_be_read_is_unknown_not_safe() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", pl.os_system())
    data = bytearray(out.getvalue())
    for at in (8, data.rfind(b"PK\x01\x02") + 10):  # compression method: 99, unsupported
        data[at : at + 2] = (99).to_bytes(2, "little")
    report = scan_bytes(bytes(data), name="odd.pt")
    assert report.verdict == "unknown", report.summary()
    assert any("could not be scanned" in f.reason for f in report.findings)


def test_a_payload_after_a_joblib_array_is_found_even_compressed() -> None:
    for compress in (0, 3):
        data = pl.joblib_after_array(compress)
        report = scan_bytes(data, name="model.joblib")
        assert report.verdict == "unsafe", report.summary()
        assert "posix.system" in report.imports["model.joblib"]


def test_a_second_pickle_in_the_same_stream_is_scanned() -> None:
    data = pickle.dumps({"weights": [1.0, 2.0]}) + pl.os_system()
    report = scan_bytes(data, name="two.pkl")
    assert report.verdict == "unsafe"
    assert "os.system" in report.imports["two.pkl"]


def test_stack_global_resolution_follows_the_stack_not_the_last_strings() -> None:
    # 'builtins' 'dict' are the last two strings pushed, but POPs drop them first
    report = scan_bytes(pl.pop_shuffle(), name="x.pkl")
    assert report.imports["x.pkl"] == ["os.system"]
    # DUP of a memoised name
    body = pl.s("os") + b"\x94" + b"2" + b"0" + pl.s("system") + pl.STACK_GLOBAL
    report = scan_bytes(pl.whole(pl.call(body, "id")), name="dup.pkl")
    assert report.imports["dup.pkl"] == ["os.system"]


def test_build_on_an_imported_object_is_tampering() -> None:
    body = pl.glob("collections", "OrderedDict") + pl.EMPTY_DICT + pl.s("x") + b"K\x01s" + pl.BUILD
    report = scan_bytes(pl.whole(body), name="patch.pkl")
    assert report.verdict == "unsafe"
    assert any("BUILD sets attributes" in f.reason for f in report.findings)


def test_extension_codes_cannot_be_judged_statically() -> None:
    report = scan_bytes(pl.whole(b"\x82\x07" + b")R"), name="ext.pkl")
    assert report.verdict == "unknown"
    assert any("extension code 7" in f.reason for f in report.findings)


# -- streams that do not parse ---------------------------------------------------------------------


def test_truncated_and_garbled_pickles_are_unknown() -> None:
    model = pickle.dumps(pl.sklearn_forest(n_estimators=2))
    for data in (model[:-50], model[: len(model) // 2], pl.garbled()):
        report = scan_bytes(data, name="broken.pkl")
        assert report.verdict == "unknown", report.summary()
        assert any("does not parse" in f.reason for f in report.findings)
    assert scan_bytes(model[:-50], name="broken.pkl", strict=True).verdict == "unsafe"


def test_a_truncated_payload_still_names_its_import() -> None:
    report = scan_bytes(pl.truncated(), name="cut.pkl")
    assert report.verdict == "unsafe"
    assert "os.system" in flagged(report)


def test_a_corrupt_compressed_stream_is_unknown() -> None:
    data = pl.joblib_after_array(3)
    report = scan_bytes(data[: len(data) // 2], name="cut.joblib")
    assert report.verdict in ("unknown", "unsafe")
    assert report.verdict != "safe"


def test_text_and_data_files_are_not_code_carrying() -> None:
    for name, data in (
        ("vocab.txt", b"cat\ndog\nbird\n"),
        ("data.csv", b"city,country\nParis,France\n"),
        ("config.json", b'{"hidden_size": 768}'),
        ("blob.bin", bytes(range(7, 256)) * 10),
    ):
        report = scan_bytes(data, name=name)
        assert report.verdict == "safe", (name, report.summary())
        assert [f.reason for f in report.findings] == ["not a code-carrying format"]


def test_an_unknown_extension_that_is_a_pickle_is_scanned_as_one() -> None:
    assert scan_bytes(pl.os_system(), name="weights.bin").verdict == "unsafe"
    assert scan_bytes(pl.proto0_global(), name="README").verdict == "unsafe"


def test_data_after_the_last_pickle_is_noted_not_parsed() -> None:
    data = pickle.dumps([1, 2, 3], protocol=2) + b"\x00\x01raw storage bytes"
    report = scan_bytes(data, name="legacy.bin")
    assert report.verdict == "safe"
    assert any("not a pickle from byte" in f.reason for f in report.findings)


# -- benign models --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def benign_files() -> dict[str, bytes]:
    return {name: build() for name, build in pl.benign().items()}


def test_real_models_are_safe(benign_files: dict[str, bytes]) -> None:
    for name, data in benign_files.items():
        report = scan_bytes(data, name=name)
        assert report.verdict == "safe", report.summary()
        assert scan_bytes(data, name=name, strict=True).verdict == "safe", name


def test_real_model_imports_are_listed(benign_files: dict[str, bytes]) -> None:
    forest = scan_bytes(benign_files["forest.joblib"], name="f.joblib").imports["f.joblib"]
    assert "sklearn.tree._tree.Tree" in forest
    assert "joblib.numpy_pickle.NumpyArrayWrapper" in forest
    assert forest == sorted(forest)
    skops = scan_bytes(benign_files["pipeline.skops"], name="p.skops")
    assert "sklearn.pipeline.Pipeline" in skops.imports["p.skops::schema.json"]
    assert "numpy.absolute" in skops.imports["p.skops::schema.json"]
    fmt_notes = {
        "weights.safetensors": "safetensors",
        "model.onnx": "ONNX",
        "array.npy": "NumPy array",
    }
    for name, note in fmt_notes.items():
        report = scan_bytes(benign_files[name], name=name)
        assert any(note in f.reason for f in report.findings), report.findings


def test_a_skops_file_with_an_untrusted_type_is_flagged(benign_files: dict[str, bytes]) -> None:
    src = zipfile.ZipFile(io.BytesIO(benign_files["pipeline.skops"]))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "schema.json":
                data = json.dumps(_retarget(json.loads(data), "absolute", "os", "system")).encode()
            zf.writestr(info, data)
    report = scan_bytes(out.getvalue(), name="evil.skops")
    assert report.verdict == "unsafe", report.summary()
    assert "os.system" in flagged(report)


def _retarget(node: Any, cls: str, module: str, new_cls: str) -> Any:
    """The skops schema with every reference to ``cls`` pointed at ``module.new_cls``."""
    if isinstance(node, dict):
        node = {k: _retarget(v, cls, module, new_cls) for k, v in node.items()}
        if node.get("__class__") == cls:
            node.update(__class__=new_cls, __module__=module)
        return node
    if isinstance(node, list):
        return [_retarget(v, cls, module, new_cls) for v in node]
    return node


def test_a_folder_is_scanned_recursively(tmp_path: Path, benign_files: dict[str, bytes]) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "model.pkl").write_bytes(benign_files["forest.pkl"])
    (tmp_path / "sub" / "weights.safetensors").write_bytes(benign_files["weights.safetensors"])
    (tmp_path / "sub" / "empty.txt").write_bytes(b"")
    assert scan_path(tmp_path).verdict == "safe"
    (tmp_path / "sub" / "deeper" / "hook.pkl").write_bytes(pl.os_system())
    report = scan_path(tmp_path)
    assert report.verdict == "unsafe"
    assert report.files == 4
    assert report.bytes == sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert [f.file for f in report.findings if f.verdict == "unsafe"] == ["sub/deeper/hook.pkl"]
    assert str(tmp_path) not in report.to_json()


def test_a_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan_path(tmp_path / "nope.pkl")


# -- streaming and bounded memory ------------------------------------------------------------------


@pytest.mark.parametrize("window", [17, 64, 4096])
def test_results_do_not_depend_on_the_read_window(
    monkeypatch: pytest.MonkeyPatch, benign_files: dict[str, bytes], window: int
) -> None:
    """Streams are read a window at a time: every boundary must be handled."""
    cases = [(p.filename, p.build()) for p in pl.MALICIOUS]
    cases += [(n, d) for n, d in benign_files.items() if n.endswith((".pkl", ".joblib"))]
    expected = {name: _pickle.walk(_source.Source(data)) for name, data in cases}
    monkeypatch.setattr(_source, "_WINDOW", window)
    for name, data in cases:
        streamed = _pickle.walk(_source.Source(file=io.BytesIO(data)))
        want = expected[name]
        assert streamed.imports == want.imports, name
        assert streamed.partial == want.partial, name
        assert (streamed.error is None) == (want.error is None), name


def test_big_payloads_are_stepped_over_in_a_compressed_member() -> None:
    import numpy as np

    big = pickle.dumps(np.zeros(3_000_000)) + pl.os_system()  # 24 MB, then a payload
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", big)
    report = scan_bytes(out.getvalue(), name="big.pt")
    assert report.verdict == "unsafe"
    assert "os.system" in report.imports["big.pt::archive/data.pkl"]


def test_big_files_on_disk_are_mapped_not_read(tmp_path: Path) -> None:
    import numpy as np

    big = pickle.dumps(np.zeros(1_000_000)) + pl.os_system()  # 8 MB, then a payload
    (tmp_path / "big.pkl").write_bytes(big)
    with zipfile.ZipFile(tmp_path / "big.pt", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", big)
        zf.writestr("archive/data/0", bytes(2_000_000))
    for name in ("big.pkl", "big.pt"):
        report = scan_path(tmp_path / name)
        assert report.verdict == "unsafe", (name, report.summary())
        assert "os.system" in flagged(report)
    assert scan_path(tmp_path).files == 2


def test_names_are_still_resolved_past_the_memo_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pickle, "_MEMO_CAP", 10)
    monkeypatch.setattr(_source, "_WINDOW", 64)
    strings = pickle.dumps([f"value-{i}" for i in range(200)], protocol=4)[:-1]  # memo 0-200
    tail = (
        pl.s("os") + pl.MEMOIZE + pl.s("system") + pl.MEMOIZE + pl.POP + pl.POP
        + b"j" + (201).to_bytes(4, "little") + b"j" + (202).to_bytes(4, "little")
        + pl.STACK_GLOBAL + pl.MARK + pl.s("id") + pl.TUPLE + pl.REDUCE + pl.STOP
    )  # fmt: skip
    report = scan_bytes(strings + tail, name="many.pkl")
    assert "os.system" in flagged(report), report.summary()


# -- the policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name", "verdict"),
    [
        ("os", "system", "unsafe"),
        ("posix", "system", "unsafe"),
        ("nt", "system", "unsafe"),
        ("__builtin__", "eval", "unsafe"),  # Python 2 name, mapped as the unpickler maps it
        ("copy_reg", "_reconstructor", "safe"),
        ("builtins", "getattr", "unsafe"),
        ("builtins", "dict", "safe"),
        ("builtins", "object", "unknown"),
        ("importlib", "import_module", "unsafe"),
        ("importlib.util", "spec_from_file_location", "unsafe"),
        ("marshal", "loads", "unsafe"),
        ("operator", "attrgetter", "unsafe"),
        ("operator", "add", "unknown"),
        ("torch", "load", "unsafe"),
        ("torch._utils", "_rebuild_tensor_v2", "safe"),
        ("torch", "FloatStorage", "safe"),
        ("torch.nn.modules.linear", "Linear", "safe"),
        ("numpy", "load", "unsafe"),
        ("numpy.core.multiarray", "_reconstruct", "safe"),
        ("numpy._core.multiarray", "scalar", "safe"),
        ("numpy.random._pickle", "__bit_generator_ctor", "safe"),
        ("sklearn.tree._tree", "Tree", "safe"),
        ("sklearn.datasets", "fetch_openml", "unsafe"),
        ("sklearn.base", "BaseEstimator.__init__.__globals__", "unsafe"),
        ("sklearn.base", "os", "unsafe"),
        ("sklearn.base", "clone.x", "unknown"),
        ("scipy.sparse._csr", "csr_matrix", "safe"),
        ("pandas.core.frame", "DataFrame", "safe"),
        ("pandas.io.pickle", "read_pickle", "unsafe"),
        ("pydoc", "locate", "unsafe"),
        ("platform", "popen", "unsafe"),
        ("functools", "partial", "safe"),
        ("osgeo", "gdal", "unknown"),  # "os" is a prefix of the text, not of the module path
        ("os ", "system", "unknown"),  # no such module: the load fails
        ("x-y", "z", "unknown"),
    ],
)
def test_policy(module: str, name: str, verdict: str) -> None:
    got, reason = judge(module, name)
    assert got == verdict, reason
    assert reason


# -- the report -----------------------------------------------------------------------------------


def test_report_round_trips_through_json_and_summarises() -> None:
    report = scan_bytes(pl.torch_zip(pl.builtins_eval()), name="m.pt")
    again = ScanReport.from_json(report.to_json())
    assert again == report
    assert isinstance(again.findings[0], Finding)
    text = report.summary()
    assert text.startswith("UNSAFE: 1 file")
    assert "builtins.eval: evaluates Python expressions" in text


# -- property: any plain data pickle is safe -------------------------------------------------------

_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_data)
def test_plain_data_is_safe_under_every_protocol(value: object) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(value, protocol=protocol)
        report = scan_bytes(data, name="data.pkl", strict=True)
        assert report.verdict == "safe", (protocol, report.summary())
        assert not any("does not parse" in f.reason for f in report.findings)
