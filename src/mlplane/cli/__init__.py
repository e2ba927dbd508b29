"""The ``mlplane`` command line (Typer + Rich): a face over the SDK client.

The app and its entry point live in :mod:`mlplane.cli.main` (not imported here,
so ``python -m mlplane.cli.main`` runs it cleanly). Every command that prints
data takes ``--json``; expected errors print ``error: <message>`` on stderr and
exit 1; usage errors exit 2.
"""
