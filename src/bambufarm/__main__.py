"""`python -m bambufarm` runs the command-line interface."""

from bambufarm.cli.main import main

main()
