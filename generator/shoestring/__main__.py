"""`python -m shoestring` runs the command-line interface."""

from .cli import main

main()
