from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from mlplane.tracking import context
from mlplane.tracking.context import MAX_DIFF_BYTES, capture_context, strip_credentials

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

GIT_TAGS = {
    "mlplane.git.commit",
    "mlplane.git.branch",
    "mlplane.git.dirty",
    "mlplane.git.remote",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=test@example.com", "-c", "user.name=Test", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Keep git from finding a repository above tmp_path.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("print('hello')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "first")
    return root


@needs_git
def test_clean_repo(repo: Path) -> None:
    ctx = capture_context(cwd=str(repo))

    assert ctx.tags["mlplane.git.commit"] == git(repo, "rev-parse", "HEAD")
    assert ctx.tags["mlplane.git.branch"] == "main"
    assert ctx.tags["mlplane.git.dirty"] == "false"
    assert "mlplane.git.remote" not in ctx.tags
    assert ctx.git_diff is None


@needs_git
def test_dirty_repo_records_the_diff_and_untracked_names(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    (repo / "notes.txt").write_text("secret contents\n")
    subdir = repo / "sub"
    subdir.mkdir()

    ctx = capture_context(cwd=str(subdir))

    assert ctx.tags["mlplane.git.dirty"] == "true"
    assert ctx.git_diff is not None
    assert "+print('changed')" in ctx.git_diff
    assert "-print('hello')" in ctx.git_diff
    assert "notes.txt" in ctx.git_diff
    assert "secret contents" not in ctx.git_diff


@needs_git
def test_untracked_file_alone_makes_the_tree_dirty(repo: Path) -> None:
    (repo / "new.py").write_text("x = 1\n")

    ctx = capture_context(cwd=str(repo))

    assert ctx.tags["mlplane.git.dirty"] == "true"
    assert ctx.git_diff is not None and "new.py" in ctx.git_diff


@needs_git
def test_diff_is_capped(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "MAX_DIFF_BYTES", 100)
    (repo / "train.py").write_text("x = 1\n" * 200)

    diff = capture_context(cwd=str(repo)).git_diff

    assert diff is not None
    assert "diff truncated at 100 bytes" in diff
    assert len(diff) < 200
    assert MAX_DIFF_BYTES == 5 * 1024 * 1024


@needs_git
def test_remote_credentials_are_stripped(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://alice:s3cret@git.example.com/org/repo.git")

    ctx = capture_context(cwd=str(repo))

    assert ctx.tags["mlplane.git.remote"] == "https://git.example.com/org/repo.git"


@needs_git
def test_detached_head_and_unborn_branch(repo: Path, tmp_path: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    detached = capture_context(cwd=str(repo)).tags
    assert "mlplane.git.branch" not in detached
    assert detached["mlplane.git.commit"] == git(repo, "rev-parse", "HEAD")

    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "trunk")
    (empty / "a.py").write_text("a = 1\n")
    git(empty, "add", "a.py")
    ctx = capture_context(cwd=str(empty))
    assert "mlplane.git.commit" not in ctx.tags
    assert ctx.tags["mlplane.git.branch"] == "trunk"
    assert ctx.git_diff is not None and "+a = 1" in ctx.git_diff


def test_outside_a_repo_there_are_no_git_tags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))

    ctx = capture_context(cwd=str(tmp_path))

    assert not GIT_TAGS & ctx.tags.keys()
    assert ctx.git_diff is None


def test_missing_git_or_directory_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not GIT_TAGS & capture_context(cwd=str(tmp_path / "gone")).tags.keys()
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    assert not GIT_TAGS & capture_context(cwd=str(tmp_path)).tags.keys()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:s3cret@host/org/r.git", "https://host/org/r.git"),
        ("https://ghp_token@host/org/r.git", "https://host/org/r.git"),
        ("https://host:8443/org/r.git", "https://host:8443/org/r.git"),
        ("ssh://git:pw@host/org/r.git", "ssh://git@host/org/r.git"),
        ("ssh://git@host/org/r.git", "ssh://git@host/org/r.git"),
        ("git@github.com:org/r.git", "git@github.com:org/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
    ],
)
def test_strip_credentials(url: str, expected: str) -> None:
    assert strip_credentials(url) == expected


def test_system_tags_and_packages() -> None:
    ctx = capture_context(entry_point="train.py")
    tags = ctx.tags

    assert all(isinstance(v, str) for v in tags.values())
    assert tags["mlplane.source.name"] == "train.py"
    assert tags["mlplane.source.type"] == "SCRIPT"
    assert tags["mlplane.python.version"] == ".".join(map(str, sys.version_info[:3]))
    assert int(tags["mlplane.cpu.count"]) >= 1
    assert int(tags["mlplane.memory.total_mb"]) > 0
    assert int(tags["mlplane.gpu.count"]) >= 0
    for key in ("mlplane.os", "mlplane.hostname", "mlplane.python.implementation"):
        assert tags[key]

    import numpy

    assert tags["mlplane.pkg.numpy"] == numpy.__version__
    assert "mlplane.pkg.torch" not in tags or "torch==" in ctx.packages
    lines = ctx.packages.splitlines()
    assert f"numpy=={numpy.__version__}" in lines
    names = [re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in lines]
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_source_from_argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    monkeypatch.setattr(sys, "argv", [str(script)])
    tags = capture_context(cwd=str(tmp_path)).tags
    assert tags["mlplane.source.name"] == str(script.resolve())
    assert tags["mlplane.source.type"] == "SCRIPT"

    monkeypatch.setattr(sys, "argv", ["-c"])
    tags = capture_context(cwd=str(tmp_path)).tags
    assert tags["mlplane.source.name"] == "<interactive>"
    assert tags["mlplane.source.type"] == "INTERACTIVE"


def test_notebook_is_detected_from_the_ipython_kernel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A stand-in kernel shell: running a real Jupyter kernel is too slow for a unit test.
    class ZMQInteractiveShell:
        user_ns = {"__vsc_ipynb_file__": "/home/me/explore.ipynb"}

    fake = types.ModuleType("IPython")
    fake.get_ipython = ZMQInteractiveShell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)

    tags = capture_context(cwd=str(tmp_path)).tags

    assert tags["mlplane.source.type"] == "NOTEBOOK"
    assert tags["mlplane.source.name"] == "/home/me/explore.ipynb"
