"""`python -m socratext ...`: the CLI of this checkout (the console script imports the installed one)."""

from socratext.cli import main

main()
