"""`python -m review_press` runs the CLI."""

from .cli import main

main()
