"""The ``mlplane`` console script's entry point, apart from the CLI it starts.

The script that ``pip`` writes imports this module at its top level. Worker processes
started from a forkserver run that top level again (it is the main module), so it
should cost nothing: the CLI, Typer and Rich load only when the script runs.
"""

from __future__ import annotations


def main() -> None:
    from mlplane.cli.main import main as run

    run()
