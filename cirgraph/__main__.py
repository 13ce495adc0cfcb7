"""`python -m cirgraph` runs the CLI."""

from cirgraph.cli import main

main()
