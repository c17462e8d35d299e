"""`python -m cnncli` runs the `cnn` command."""

from cnncli.cli import main

main()
