"""Capture where a run comes from: source, git state, interpreter, packages and hardware.

This runs at each ``start_run``, so it must be fast and must never raise:
whatever cannot be read is simply left out. What cannot change within a
process (packages, CPU, OS, GPUs) is read once and cached.
"""

from __future__ import annotations

import functools
import getpass
import importlib.metadata
import os
import platform
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from mlplane.tracking.sysmetrics import NvmlGpus

__all__ = ["MAX_DIFF_BYTES", "RunContext", "capture_context", "strip_credentials"]

MAX_DIFF_BYTES = 5 * 1024 * 1024
_GIT_TIMEOUT_S = 2.0
_SMALL_OUTPUT_BYTES = 1024 * 1024
_MAX_UNTRACKED = 1000
_TRUNCATED_MARKER = "\n# [mlplane: diff truncated at {limit} bytes]\n"

# Packages whose versions matter enough to be searchable as tags.
_KEY_PACKAGES = ("numpy", "pandas", "scikit-learn", "torch", "xgboost", "lightgbm")


@dataclass(frozen=True)
class RunContext:
    """What :func:`capture_context` found.

    Attributes:
        tags: System tags to set on the run (``mlplane.*`` keys, string values).
        git_diff: ``git diff HEAD`` when the work tree is dirty, headed by the
            names of untracked files; ``None`` when clean or not in a repo.
        packages: ``name==version`` lines of every installed distribution,
            sorted by name, one per name.
    """

    tags: dict[str, str]
    git_diff: str | None
    packages: str


def capture_context(entry_point: str | None = None, cwd: str | None = None) -> RunContext:
    """Describe the current process and its git work tree; never raises.

    Args:
        entry_point: Name to record as the run's source, instead of the
            script found in ``sys.argv[0]``.
        cwd: Directory whose git repository is described; defaults to the
            working directory. Git tags are left out when it is not in a
            repository or git is not installed.
    """
    tags = dict(_static_tags())
    tags.update(_source_tags(entry_point))
    git_diff = None
    try:
        git_tags, git_diff = _git_state(cwd if cwd is not None else os.getcwd())
        tags.update(git_tags)
    except Exception:  # a missing cwd, a corrupt repository: no git tags then
        git_diff = None
    return RunContext(tags=tags, git_diff=git_diff, packages=_packages_text())


def strip_credentials(url: str) -> str:
    """Remove secrets from a remote URL: ``https://user:token@host/x`` -> ``https://host/x``.

    For HTTP(S) a bare user name is removed too, since it is often a token;
    for other schemes (``ssh://git@host``) the user name is kept and only a
    password dropped. scp-like remotes (``git@host:org/repo``) carry no secret.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    userinfo, _, host = authority.rpartition("@")
    kept = "" if scheme.lower() in ("http", "https") else userinfo.partition(":")[0] + "@"
    return f"{scheme}://{kept}{host}{slash}{path}"


# --- per-process facts, read once ------------------------------------------------


@functools.cache
def _static_tags() -> dict[str, str]:
    tags = {
        "mlplane.python.version": platform.python_version(),
        "mlplane.python.implementation": platform.python_implementation(),
        "mlplane.os": platform.platform(),
        "mlplane.hostname": socket.gethostname(),
        "mlplane.cpu.count": str(os.cpu_count() or 0),
    }
    cpu_model = _cpu_model()
    if cpu_model:
        tags["mlplane.cpu.model"] = cpu_model
    try:
        tags["mlplane.memory.total_mb"] = str(psutil.virtual_memory().total // (1024 * 1024))
    except Exception:
        pass
    try:
        # getuser fails in containers whose uid has no passwd entry.
        tags["mlplane.user"] = getpass.getuser()
    except Exception:
        pass
    tags.update(_gpu_tags())
    versions = _package_versions()
    for name in _KEY_PACKAGES:
        if name in versions:
            tags[f"mlplane.pkg.{name}"] = versions[name][1]
    return tags


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor()


def _gpu_tags() -> dict[str, str]:
    gpus = NvmlGpus.open()
    if gpus is None:
        return {"mlplane.gpu.count": "0"}
    try:
        tags = {"mlplane.gpu.count": str(gpus.count)}
        if gpus.count:
            tags["mlplane.gpu.names"] = ",".join(gpus.names())
        return tags
    finally:
        gpus.close()


@functools.cache
def _package_versions() -> dict[str, tuple[str, str]]:
    """Normalised name -> (name as published, version) of each installed distribution."""
    versions: dict[str, tuple[str, str]] = {}
    for dist in importlib.metadata.distributions():
        try:
            name, version = dist.metadata["Name"], dist.version
        except Exception:  # broken metadata of a half-removed package
            continue
        if not name or not version:
            continue
        # The first one found is the one imports would use when a name is installed twice.
        versions.setdefault(re.sub(r"[-_.]+", "-", name).lower(), (name, version))
    return versions


@functools.cache
def _packages_text() -> str:
    versions = _package_versions()
    return "".join(f"{versions[key][0]}=={versions[key][1]}\n" for key in sorted(versions))


# --- per-run facts --------------------------------------------------------------


def _source_tags(entry_point: str | None) -> dict[str, str]:
    notebook = _notebook_name()
    if notebook is not None:
        return {"mlplane.source.name": entry_point or notebook, "mlplane.source.type": "NOTEBOOK"}
    if entry_point is not None:
        return {"mlplane.source.name": entry_point, "mlplane.source.type": "SCRIPT"}
    script = sys.argv[0] if sys.argv else ""
    if script in ("", "-c") or hasattr(sys, "ps1"):
        return {"mlplane.source.name": "<interactive>", "mlplane.source.type": "INTERACTIVE"}
    try:
        name = str(Path(script).resolve())
    except OSError:
        name = script
    return {"mlplane.source.name": name, "mlplane.source.type": "SCRIPT"}


def _notebook_name() -> str | None:
    """The notebook's name when running under a Jupyter kernel, else ``None``."""
    ipython = sys.modules.get("IPython")
    if ipython is None:  # never import IPython ourselves: it is slow and tells nothing
        return None
    try:
        shell: Any = ipython.get_ipython()
    except Exception:
        return None
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return None
    # VS Code puts the path in the user namespace; Jupyter Server >= 2 in the environment.
    path = getattr(shell, "user_ns", {}).get("__vsc_ipynb_file__") or os.environ.get(
        "JPY_SESSION_NAME"
    )
    return str(path) if path else "<notebook>"


def _git_state(cwd: str) -> tuple[dict[str, str], str | None]:
    # One `git status` gives the commit, branch and dirtiness, and finds the
    # repository root itself, so no `rev-parse --show-toplevel` is needed.
    status = _git(["status", "--porcelain=v2", "--branch", "-z"], cwd)
    if status is None or status[0] != 0:
        return {}, None
    tags: dict[str, str] = {}
    commit = branch = None
    changed = False
    untracked: list[str] = []
    entries = status[1].decode("utf-8", errors="replace").split("\0")
    skip_next = False
    for entry in entries:
        if skip_next:  # the original path of a rename or copy
            skip_next = False
        elif entry.startswith("# branch.oid "):
            commit = entry.removeprefix("# branch.oid ")
        elif entry.startswith("# branch.head "):
            branch = entry.removeprefix("# branch.head ")
        elif entry.startswith("? "):
            untracked.append(entry[2:])
        elif entry[:2] in ("1 ", "2 ", "u "):
            changed = True
            skip_next = entry.startswith("2 ")
    has_commit = commit is not None and commit != "(initial)"
    if commit is not None and has_commit:
        tags["mlplane.git.commit"] = commit
    if branch is not None and branch != "(detached)":
        tags["mlplane.git.branch"] = branch
    dirty = changed or bool(untracked)
    tags["mlplane.git.dirty"] = "true" if dirty else "false"

    remote = _git(["config", "--get", "remote.origin.url"], cwd)
    if remote is not None and remote[0] == 0 and remote[1].strip():
        tags["mlplane.git.remote"] = strip_credentials(remote[1].decode(errors="replace").strip())

    diff = _git_diff(cwd, has_commit, changed, untracked) if dirty else None
    return tags, diff


def _git_diff(cwd: str, has_commit: bool, changed: bool, untracked: list[str]) -> str:
    parts = []
    if untracked:
        # Names only: their content may be huge or secret, and a commented
        # header keeps the text usable by `git apply`.
        shown = untracked[:_MAX_UNTRACKED]
        parts.append("# Untracked files (not in this diff):\n")
        parts.extend(f"#   {name}\n" for name in shown)
        if len(untracked) > len(shown):
            parts.append(f"#   ... and {len(untracked) - len(shown)} more\n")
        parts.append("\n")
    if changed:
        # Without a commit yet, the staged files are the whole change.
        against = ["HEAD"] if has_commit else ["--cached"]
        result = _git(["diff", "--no-color", "--no-ext-diff", *against], cwd, MAX_DIFF_BYTES)
        if result is not None:
            text = result[1]
            if len(text) > MAX_DIFF_BYTES:
                parts.append(text[:MAX_DIFF_BYTES].decode("utf-8", errors="replace"))
                parts.append(_TRUNCATED_MARKER.format(limit=MAX_DIFF_BYTES))
            else:
                parts.append(text.decode("utf-8", errors="replace"))
    return "".join(parts)


def _git(args: list[str], cwd: str, limit: int = _SMALL_OUTPUT_BYTES) -> tuple[int, bytes] | None:
    """Run git; return its exit code and at most ``limit + 1`` bytes of its output.

    ``None`` when git is missing or exceeded the timeout. Output is read up
    to the limit and the process then killed, so a huge diff costs neither
    memory nor the whole timeout.
    """
    env = {
        **os.environ,
        # Do not take index.lock: the user's own git commands may run concurrently.
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_TERMINAL_PROMPT": "0",
    }
    try:
        proc = subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    timed_out = threading.Event()

    def kill_on_timeout() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(_GIT_TIMEOUT_S, kill_on_timeout)
    timer.start()
    try:
        assert proc.stdout is not None
        output = proc.stdout.read(limit + 1)
        if len(output) > limit:
            proc.kill()
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return None if timed_out.is_set() else (code, output)
