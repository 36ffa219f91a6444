"""Click's usage errors (an unknown option, a missing one) in lossctl's one-line form.

Every other error is one ``lossctl: error:`` line on stderr; Click's own
would be a usage block and ``Error: ...``.  An option of another command
says which command has it.
"""

from __future__ import annotations

from typing import Any

import click

# an option of one command given to another: what the user probably wants instead
_OTHER_COMMAND_HINTS = {
    "--max-regression": "to gate eval against an earlier report use --baseline with --max-increase",
    "--max-increase": "compare gates the candidate with --max-regression",
    "--baseline": "compare takes the baseline's predictions with --baseline-pred",
}


class _Usage(click.UsageError):
    """A usage error shown as every other error is: one ``lossctl: error:`` line."""

    def show(self, file: Any = None) -> None:
        click.echo(f"lossctl: error: {self.format_message()}", err=True)
        if self.ctx is not None:
            click.echo(f"Try '{self.ctx.command_path} --help' for help.", err=True)


def _usage(e: click.UsageError) -> click.UsageError:
    if isinstance(e, _Usage):
        return e
    message = e.format_message()
    if isinstance(e, click.NoSuchOption) and e.ctx is not None and e.ctx.parent is not None:
        group = e.ctx.parent.command
        here = e.ctx.info_name
        others = [name for name, cmd in getattr(group, "commands", {}).items()
                  if name != here and any(e.option_name in p.opts for p in cmd.params)]
        if others:
            hint = _OTHER_COMMAND_HINTS.get(e.option_name)
            message = (f"lossctl {here} has no option {e.option_name}: it is an option of "
                       f"lossctl {_and(others)}"
                       + (f" ({hint})" if hint else ""))
    return _Usage(message[:1].lower() + message[1:], e.ctx)


def _and(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class UsageGroup(click.Group):
    """Click's usage errors (unknown option, missing argument) in lossctl's one-line form."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            raise _usage(e) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            raise _usage(e) from None
