"""Shell completion (bash, zsh, fish): loss names and parameters, column names from the FILE.

Click drives the protocol (``_LOSSCTL_COMPLETE=bash_source lossctl`` prints
the script to install); this module supplies the values: ``-m`` completes
loss names, aliases and ``name:param=`` (``huber:delta=``), the column
options complete the names in the header (or schema, or first JSON lines)
of the first FILE already on the command line.  Completion never fails and
never reads more than a file's header: any problem gives no completions.

Bash splits words at ``:`` and ``=`` (``COMP_WORDBREAKS``), which would cut
``huber:delta=`` in three; the bash script here passes the raw command line
too, and each completion is trimmed to the part bash replaces.
"""

from __future__ import annotations

import glob
import os
from typing import Any

import click
from click.shell_completion import (
    BashComplete,
    CompletionItem,
    FishComplete,
    ShellComplete,
    ZshComplete,
    add_completion_class,
    split_arg_string,
)

# --------------------------------------------------------------------------
# Losses: NAME, NAME:param=value,param=value, comma lists of those
# --------------------------------------------------------------------------


def complete_losses(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Loss names (``mse``), then their parameters (``huber:delta=``), in a comma list.

    ``--sort`` offers the losses given with ``-m`` (as written there), if any.
    """
    try:
        given = ctx.params.get("losses")
        if param.name == "sort_by" and given:
            from .core.losses import split_loss_list

            return [CompletionItem(k) for k in split_loss_list(given) if k.startswith(incomplete)]
        return _losses(incomplete)
    except Exception:  # completion must never break the shell
        return []


def _losses(incomplete: str) -> list[CompletionItem]:
    from .core.losses import CATALOGUE, lookup, split_loss_list

    head, comma, current = incomplete.rpartition(",")
    head += comma
    if ":" in current:  # NAME:param=...: that loss's parameters
        name, _, last = current.partition(":")
        return _params(lookup(name), head + name + ":", last, set())
    out = []
    before = split_loss_list([head]) if head else []
    if before and ":" in before[-1]:  # NAME:a=1,<TAB> may go on with NAME's parameters
        name, _, given = before[-1].partition(":")
        out = _params(lookup(name), head, current, {p.partition("=")[0].strip() for p in given.split(",")})
    if "=" in current:
        return out
    for d in CATALOGUE:
        for name in (d.name, *d.aliases):
            if name.startswith(current.lower()):
                required = [p for p in d.params if p.default is None]
                text = f"{name}:{required[0].name}=" if required else name
                out.append(CompletionItem(head + text, help=f"{d.task}: {d.doc}"))
    return _unique(out)


def _params(definition: Any, prefix: str, last: str, done: set[str]) -> list[CompletionItem]:
    key, eq, value = last.partition("=")
    out = []
    for p in definition.params:
        if eq:
            if p.name == key.strip() and p.kind is bool:
                out += [CompletionItem(f"{prefix}{key}={v}") for v in ("true", "false")
                        if v.startswith(value.lower())]
            continue
        if p.name.startswith(key.strip()) and p.name not in done:
            default = "required" if p.default is None else f"default {p.default}"
            valid = f", {p.valid_doc}" if p.valid_doc else ""
            out.append(CompletionItem(f"{prefix}{p.name}=", help=f"{p.doc} ({default}{valid})"))
    return out


def _unique(items: list[CompletionItem]) -> list[CompletionItem]:
    seen: set[str] = set()
    return [i for i in items if not (i.value in seen or seen.add(i.value))]


# --------------------------------------------------------------------------
# Columns: from the header of the first FILE on the command line
# --------------------------------------------------------------------------


def complete_columns(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Column names (a comma list continues) from the first FILE already given."""
    try:
        columns = _columns_of(ctx, param)
    except Exception:  # a missing file, a bad option: no completions, never an error
        return []
    head, _, current = incomplete.rpartition(",")
    given = set(head.split(",")) if head else set()
    head = head + "," if head else ""
    return [CompletionItem(head + c) for c in columns if c.startswith(current) and c not in given]


def complete_files(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Let the shell complete paths."""
    return [CompletionItem(incomplete, type="file")]


def _given(ctx: click.Context) -> dict[str, Any]:
    """The options parsed so far.

    While an option waits for its value (``-l <TAB>``) Click's parse of the
    words before stops short and ``ctx.params`` is empty: parse them again
    without that dangling option.
    """
    args = _words[-1] if _words else []
    if ctx.params.get("files") is not None or not args or not args[-1].startswith("-"):
        return ctx.params
    args = args[:-1]
    if ctx.info_name in args:
        args = args[args.index(ctx.info_name) + 1:]
    with ctx.command.make_context(ctx.info_name, args, parent=ctx.parent,
                                  resilient_parsing=True) as again:
        return again.params


def _columns_of(ctx: click.Context, param: click.Parameter) -> list[str]:
    params = _given(ctx)
    files = list(params.get("files") or ())
    labels = params.get("labels_file")
    if param.name == "label" and labels:  # the labels come from --labels FILE
        files = [labels]
    path = next((p for p in (_first_input(f) for f in files if f != "-") if p), None)
    if path is None:
        return []
    from .io.reader import open_reader
    from .io.sources import open_source

    delimiter = params.get("delimiter")
    delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter) if delimiter else None
    source = open_source(path, params.get("input_format"), delimiter, not params.get("no_header"))
    return open_reader(source, 1).columns  # the header, schema or first lines only


_MAX_DIRS = 100  # a directory tree is searched this far for a data file, no further


def _first_input(path: str) -> str | None:
    """The first data file a path, glob or directory names, without listing them all."""
    from .io.columns import has_magic
    from .io.sources import data_file, shard_dir

    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        for visited, (root, dirs, files) in enumerate(os.walk(path)):
            if visited == _MAX_DIRS:
                break
            dirs[:] = sorted(d for d in dirs if shard_dir(d))
            for f in sorted(files):
                if data_file(f) and os.path.isfile(os.path.join(root, f)):  # (not a FIFO)
                    return os.path.join(root, f)
        return None
    if has_magic(path):
        return next((f for f in glob.iglob(path, recursive=True) if os.path.isfile(f)), None)
    return None


# --------------------------------------------------------------------------
# bash: words cut at ':' and '='
# --------------------------------------------------------------------------

_SOURCE_BASH = """\
%(complete_func)s() {
    local IFS=$'\\n'
    local response

    response=$(env COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD=$COMP_CWORD \\
        COMP_LINE="$COMP_LINE" COMP_POINT=$COMP_POINT COMP_CUR="${COMP_WORDS[COMP_CWORD]}" \\
        %(complete_var)s=bash_complete $1)

    for completion in $response; do
        IFS=',' read type value <<< "$completion"

        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=($value)
            # more to type after huber:delta= or mse, : no space yet
            [[ $value == *[=:,] ]] && compopt -o nospace
        fi
    done

    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""


_words: list[list[str]] = []  # the complete words of the command line being completed


class _KeepsWords(ShellComplete):
    """Remembers the words before the one being completed, for :func:`_given`."""

    def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem]:
        _words.append(list(args))
        try:
            return super().get_completions(args, incomplete)
        finally:
            _words.pop()


class LossctlZshComplete(_KeepsWords, ZshComplete):
    """Click's zsh completion, keeping the words."""


# Click's fish script, but the type is split off at the first comma only: values
# (mse,huber) and descriptions hold commas too
_SOURCE_FISH = """\
function %(complete_func)s;
    set -l response (env %(complete_var)s=fish_complete COMP_WORDS=(commandline -cp) \
        COMP_CWORD=(commandline -t) %(prog_name)s);

    for completion in $response;
        set -l metadata (string split -m 1 "," $completion);

        if test $metadata[1] = "dir";
            __fish_complete_directories $metadata[2];
        else if test $metadata[1] = "file";
            __fish_complete_path $metadata[2];
        else if test $metadata[1] = "plain";
            echo $metadata[2];
        end;
    end;
end;

complete --no-files --command %(prog_name)s --arguments "(%(complete_func)s)";
"""


class LossctlFishComplete(_KeepsWords, FishComplete):
    """Click's fish completion, keeping the words, commas intact, ``--by=<TAB>`` answered."""

    source_template = _SOURCE_FISH

    def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem]:
        # fish replaces the whole token: --by=seg must complete to --by=segment
        option, eq, _ = incomplete.partition("=")
        items = super().get_completions(args, incomplete)
        if eq and option.startswith("-"):
            for item in items:
                item.value = f"{option}={item.value}"
        return items


class LossctlBashComplete(_KeepsWords, BashComplete):
    """Bash completion that reads the raw line, so ``huber:delta=`` stays one word."""

    source_template = _SOURCE_BASH

    def get_completion_args(self) -> tuple[list[str], str]:
        line, point = os.environ.get("COMP_LINE"), os.environ.get("COMP_POINT")
        if line is None or point is None:  # Click's own protocol: COMP_WORDS/COMP_CWORD
            return super().get_completion_args()
        before = line[:int(point)]
        try:
            words = split_arg_string(before)
        except ValueError:
            words = before.split()
        incomplete = "" if not before or before[-1].isspace() or not words else words.pop()
        return words[1:], incomplete

    def complete(self) -> str:
        args, incomplete = self.get_completion_args()
        cur = os.environ.get("COMP_CUR")
        out = []
        for item in self.get_completions(args, incomplete):
            value = item.value
            # bash replaces only its own current word: what follows the last : or =
            if item.type == "plain" and cur is not None and cur != incomplete \
                    and incomplete.endswith(cur) and value.startswith(incomplete):
                value = value[len(incomplete) - len(cur):]
            out.append(f"{item.type},{value}")
        return "\n".join(out)


SHELLS = {"bash": LossctlBashComplete, "zsh": LossctlZshComplete, "fish": LossctlFishComplete}


def register() -> None:
    """Use lossctl's completion classes instead of Click's (same protocol, same scripts but bash's)."""
    for name, cls in SHELLS.items():
        add_completion_class(cls, name)
