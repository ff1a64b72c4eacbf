"""`python -m drorch` is the same as the `drorch` console script."""

from drorch.cli.main import main

main()
