"""``python -m lossctl``: the same as the ``lossctl`` command."""

from .cli import main

main()
