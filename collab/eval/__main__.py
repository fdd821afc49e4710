"""`python -m collab.eval`: see collab.eval.cli."""
from collab.eval.cli import main

main()
