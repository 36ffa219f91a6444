"""Shell completion: loss names and parameters, column names from the FILE on the command line.

Through Click's completion protocol as the shells drive it (``_LOSSCTL_COMPLETE``
with ``COMP_WORDS``/``COMP_CWORD`` in a real process), in-process through the
ShellComplete classes, and through the bash function the sourced script
defines, with bash's own word splitting at ``:`` and ``=``.
"""

from __future__ import annotations

import gzip
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest
from cli_run import LOSSCTL, proc_env

from lossctl.cli import cli
from lossctl.completion import SHELLS, LossctlBashComplete
from lossctl.core.losses import CATALOGUE

COLUMNS = ["id", "segment", "y", "yhat"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("complete")
    t = pa.table({"id": [1, 2], "segment": ["a", "b"], "y": [1.0, 2.0], "yhat": [1.5, 2.5]})
    (d / "p.csv").write_text("id,segment,y,yhat\n1,a,1,1.5\n")
    (d / "p.csv.gz").write_bytes(gzip.compress(b"id,segment,y,yhat\n1,a,1,1.5\n"))
    (d / "p.tsv").write_text("id\tsegment\ty\tyhat\n1\ta\t1\t1.5\n")
    (d / "p.txt").write_text("id;segment;y;yhat\n1;a;1;1.5\n")
    (d / "noheader.csv").write_text("1,a,1,1.5\n")
    pq.write_table(t, d / "p.parquet")
    feather.write_feather(t, d / "p.feather")
    orc.write_table(t, str(d / "p.orc"))
    (d / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in t.to_pylist()))
    (d / "labels.csv").write_text("id,truth\n1,1\n")
    (d / "shards" / "_tmp").mkdir(parents=True)
    (d / "shards" / "_tmp" / "junk.csv").write_text("junk\n")
    pq.write_table(t, d / "shards" / "part-0.parquet")
    (d / "garbage.parquet").write_bytes(b"PAR1 not really")
    return d


def complete(words: list[str], incomplete: str, shell: str = "bash") -> list[str]:
    """Completions in-process, as the shell's completion class computes them."""
    comp = SHELLS[shell](cli, {}, "lossctl", "_LOSSCTL_COMPLETE")
    return [c.value for c in comp.get_completions(list(words), incomplete)]


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------


@pytest.mark.parametrize("incomplete,expected", [
    ("hu", ["huber"]),
    ("mse,hu", ["mse,huber"]),
    ("mse,max", ["mse,max_error"]),
    ("huber:", ["huber:delta="]),
    ("focal:", ["focal:alpha=", "focal:gamma="]),
    ("focal:g", ["focal:gamma="]),
    ("focal:alpha=0.5,", None),  # focal's other parameter first, then any loss
    ("focal:alpha=0.5,g", ["focal:alpha=0.5,gamma=", "focal:alpha=0.5,gamma_deviance"]),
    ("poisson:log_input=", ["poisson:log_input=true", "poisson:log_input=false"]),
    ("poisson:log_input=t", ["poisson:log_input=true"]),
    ("cce:renormalize=f", ["cce:renormalize=false"]),
    ("weighted_s", ["weighted_sigmoid_ce:pos_weight="]),  # a required parameter is offered at once
    ("nosuchloss:", []),
    ("zzz", []),
])
def test_loss_completion(incomplete: str, expected: list[str] | None) -> None:
    got = complete(["eval", "p.csv", "-m"], incomplete)
    if expected is None:
        assert got[0] == "focal:alpha=0.5,gamma=" and "focal:alpha=0.5,mse" in got
    else:
        assert got == expected


def test_every_loss_and_parameter_completes() -> None:
    """New losses in the catalogue complete with no change here."""
    for d in CATALOGUE:
        for name in (d.name, *d.aliases):
            got = complete(["eval", "-m"], name)
            assert any(g == name or g.startswith(name + ":") for g in got), name
        for p in d.params:
            assert f"{d.name}:{p.name}=" in complete(["eval", "-m"], f"{d.name}:"), (d.name, p.name)


def test_sort_offers_the_losses_given() -> None:
    assert complete(["eval", "p.csv", "-m", "mse,huber:delta=2", "--by", "segment", "--sort"], "") \
        == ["mse", "huber:delta=2"]
    assert "rmse" in complete(["eval", "p.csv", "--sort"], "rm")


# --------------------------------------------------------------------------
# columns from the FILE on the command line
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["p.csv", "p.csv.gz", "p.tsv", "p.parquet", "p.feather", "p.orc",
                                  "p.jsonl", "shards", "shards/*.parquet"])
@pytest.mark.parametrize("option", ["-l", "-p", "-w", "--by", "--keep", "--label"])
def test_columns_from_every_format(data: Path, name: str, option: str) -> None:
    assert complete(["eval", str(data / name), option], "") == COLUMNS


@pytest.mark.parametrize("words,incomplete,expected", [
    (["eval", "{d}/p.csv", "-l", "y", "-p"], "yh", ["yhat"]),
    (["eval", "{d}/p.csv", "--keep"], "id,", ["id,segment", "id,y", "id,yhat"]),
    (["eval", "{d}/p.csv", "--keep"], "id,s", ["id,segment"]),
    (["eval", "{d}/p.txt", "--delimiter", ";", "-l"], "", COLUMNS),
    (["eval", "{d}/noheader.csv", "--no-header", "-l"], "", ["1", "2", "3", "4"]),
    (["eval", "{d}/p.txt", "--input-format", "tsv", "-l"], "", ["id;segment;y;yhat"]),
    (["eval", "{d}/p.parquet", "--labels", "{d}/labels.csv", "-l"], "", ["id", "truth"]),
    (["eval", "{d}/p.parquet", "--labels", "{d}/labels.csv", "-p"], "y", ["y", "yhat"]),
    (["eval", "{d}/p.parquet", "--labels", "{d}/labels.csv", "--key"], "i", ["id"]),
    (["compare", "{d}/p.parquet", "-l", "y", "--baseline-pred"], "", COLUMNS),
    (["rows", "{d}/p.jsonl", "-o", "out.parquet", "--keep"], "se", ["segment"]),
    (["eval", "--label=y", "{d}/p.csv", "-p"], "", COLUMNS),
])
def test_column_completion_follows_the_options(data: Path, words: list[str], incomplete: str,
                                               expected: list[str]) -> None:
    assert complete([w.format(d=data) for w in words], incomplete) == expected


@pytest.mark.parametrize("words", [
    ["eval", "-l"],  # no FILE yet
    ["eval", "{d}/missing.csv", "-l"],
    ["eval", "{d}/garbage.parquet", "-l"],
    ["eval", "-", "-l"],  # stdin is never read to complete
    ["eval", "{d}/empty_dir", "-l"],
    ["eval", "{d}/p.csv", "--input-format", "orc", "-l"],
    ["eval", "{d}/p.csv", "--delimiter", "too-long", "-l"],
])
def test_column_completion_never_fails(data: Path, words: list[str]) -> None:
    (data / "empty_dir").mkdir(exist_ok=True)
    assert complete([w.format(d=data) for w in words], "") == []


def test_files_are_left_to_the_shell() -> None:
    comp = LossctlBashComplete(cli, {}, "lossctl", "_LOSSCTL_COMPLETE")
    for words in (["eval"], ["eval", "p.csv", "--labels"], ["rows", "p.csv", "-o"], ["merge"]):
        assert [(c.type, c.value) for c in comp.get_completions(words, "sa")] == [("file", "sa")]


# --------------------------------------------------------------------------
# the protocol, in a real process, for every shell
# --------------------------------------------------------------------------


def run_complete(env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(LOSSCTL)], env=proc_env(env), capture_output=True, text=True,
                          timeout=60, cwd=cwd, stdin=subprocess.PIPE)  # stdin left open: never read


def test_bash_protocol_in_a_process(data: Path) -> None:
    words = ["lossctl", "eval", str(data / "p.parquet"), "-m", "mse", "-p", ""]
    p = run_complete({"_LOSSCTL_COMPLETE": "bash_complete", "COMP_WORDS": shlex.join(words),
                      "COMP_CWORD": str(len(words) - 1)})
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.split() == [f"plain,{c}" for c in COLUMNS]


def test_zsh_protocol_in_a_process(data: Path) -> None:
    words = ["lossctl", "eval", str(data / "p.jsonl"), "-m", "huber:"]
    p = run_complete({"_LOSSCTL_COMPLETE": "zsh_complete", "COMP_WORDS": " ".join(words),
                      "COMP_CWORD": "4"})
    assert p.returncode == 0 and p.stderr == ""
    # type, value (colons escaped where a description follows), description
    assert p.stdout.split("\n")[:3] == ["plain", r"huber\:delta=", "transition point (default 1.0, > 0)"]


def test_fish_protocol_in_a_process(data: Path) -> None:
    p = run_complete({"_LOSSCTL_COMPLETE": "fish_complete",
                      "COMP_WORDS": f"lossctl eval {data / 'p.orc'} --by seg", "COMP_CWORD": "seg"})
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.strip() == "plain,segment"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_source_scripts(shell: str) -> None:
    p = run_complete({"_LOSSCTL_COMPLETE": f"{shell}_source"})
    assert p.returncode == 0
    assert "_LOSSCTL_COMPLETE" in p.stdout and "_lossctl_completion" in p.stdout
    if shell == "bash":
        assert "COMP_LINE" in p.stdout  # lossctl's script: the raw line, for huber:delta=
        assert subprocess.run(["bash", "-n"], input=p.stdout, text=True).returncode == 0
    exe = shutil.which(shell)
    if shell != "bash" and exe:  # (zsh and fish are not always installed)
        assert subprocess.run([exe, "-n"], input=p.stdout, text=True).returncode == 0


BASH_DRIVER = r"""
eval "$(_LOSSCTL_COMPLETE=bash_source lossctl)"
COMP_LINE=$1
COMP_POINT=${#COMP_LINE}
# split the line as bash does for completion: at blanks, and around : and = (COMP_WORDBREAKS)
read -r -a COMP_WORDS <<< "$(sed -e 's/\([:=]\)/ \1 /g' <<< "$COMP_LINE")"
[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_lossctl_completion lossctl 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}"
"""


@pytest.mark.parametrize("line,expected", [
    ("lossctl eval p.csv -m hu", ["huber"]),
    ("lossctl eval p.csv -m huber:", [":delta="]),  # bash's current word is ':'
    ("lossctl eval p.csv -m huber:d", ["delta="]),
    ("lossctl eval p.csv -m poisson:log_input=", ["=true", "=false"]),
    ("lossctl eval p.csv -m poisson:log_input=f", ["false"]),
    ("lossctl eval p.csv -l y -p ", ["id", "segment", "y", "yhat"]),
    ("lossctl eval p.csv --label=y -p yh", ["yhat"]),
])
def test_the_bash_function(data: Path, line: str, expected: list[str]) -> None:
    """The sourced function, with the words cut where bash cuts them (COMP_WORDBREAKS)."""
    p = subprocess.run(["bash", "-c", BASH_DRIVER, "driver", line], capture_output=True, text=True,
                       env=_in_path(), cwd=data, timeout=60)
    assert p.stdout.split("\n")[:-1] == expected, p.stderr


SHELL_LINES = [
    ("lossctl eval p.csv -m hu", ["huber"]),
    ("lossctl eval p.csv -m mse,ma", ["mse,macro_f1", "mse,mad", "mse,mae", "mse,mape",
                                      "mse,matthews_corrcoef", "mse,max_error"]),
    ("lossctl eval p.csv -m huber:", ["huber:delta="]),
    ("lossctl eval p.csv -m poisson:log_input=", ["poisson:log_input=false", "poisson:log_input=true"]),
    ("lossctl eval p.feather -l y -p ", ["id", "segment", "y", "yhat"]),
    ("lossctl eval p.jsonl --keep id,", ["id,segment", "id,y", "id,yhat"]),
]


def _in_path() -> dict[str, str]:
    return proc_env({"PATH": f"{LOSSCTL.parent}:{proc_env()['PATH']}"})


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
@pytest.mark.parametrize("line,expected", SHELL_LINES)
def test_real_zsh(data: Path, tmp_path: Path, line: str, expected: list[str]) -> None:
    """An interactive zsh (in a pseudo-terminal) completes the line after sourcing the script."""
    script = tmp_path / "lossctl.zsh"
    script.write_text(run_complete({"_LOSSCTL_COMPLETE": "zsh_source"}).stdout)
    capture = Path(__file__).with_name("zsh_capture.zsh")
    p = subprocess.run(["zsh", "-f", str(capture), line, str(script)], capture_output=True,
                       text=True, env=_in_path(), cwd=data, timeout=60)
    assert p.stdout.split() == expected, p.stderr


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
@pytest.mark.parametrize("line,expected", [*SHELL_LINES, ("lossctl eval p.csv --by=s", ["--by=segment"])])
def test_real_fish(data: Path, line: str, expected: list[str]) -> None:
    """fish's own ``complete -C`` after sourcing the script (descriptions after a tab)."""
    fish = f"_LOSSCTL_COMPLETE=fish_source lossctl | source; complete -C {shlex.quote(line)}"
    p = subprocess.run(["fish", "--no-config", "-c", fish], capture_output=True, text=True,
                       env=_in_path(), cwd=data, timeout=60)
    assert sorted(ln.split("\t")[0] for ln in p.stdout.splitlines()) == expected, p.stderr


def test_completion_keeps_version_fast() -> None:
    """The completion module is imported only when completing."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "lossctl", "--version"],
                       capture_output=True, text=True, env=proc_env(), timeout=60)
    assert p.returncode == 0
    assert "lossctl.completion" not in p.stderr and "shell_completion" not in p.stderr
