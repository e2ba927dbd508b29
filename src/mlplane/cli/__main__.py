"""``python -m mlplane.cli``."""

from mlplane.cli.main import main

main()
