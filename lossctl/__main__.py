"""``python -m lossctl`` and the ``lossctl`` command.

``lossctl --version`` is answered here, before Click is imported (Click alone
costs ~60 ms of start-up); everything else goes to :mod:`lossctl.cli`.
"""

import sys


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] in (["--version"], ["-V"]):
        from . import __version__, native

        # the very line Click's version option prints (lossctl.cli)
        sys.stdout.write(f"lossctl, version {__version__} ({native.status()})\n")
        return
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
