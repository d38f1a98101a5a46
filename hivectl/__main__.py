"""`python -m hivectl` runs the same CLI as the `hivectl` script."""

from hivectl.cli import main

main()
