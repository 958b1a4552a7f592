"""Every `rftwin CMD ... --option` that README.md and docs/*.md show (code spans, fenced and indented code blocks)
names an option that CMD has, and every default a usage line states in brackets (`[--trials 3]`) is CMD's default
(placeholders such as N or FILE, choice lists a|b and file names state none). Options shown after
`benchmarks/<script>.py` are read by that script; any other option shown in code exists somewhere.

Options are read from the click command typer builds (``typer.main.get_command(app)``), so nothing is imported
beyond the CLI itself.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import typer

from rftwin.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?:/--[a-z][a-z0-9-]*)?")
# 'rftwin CMD' as a user types it (also .venv/bin/rftwin); not 'rftwin.cli', 'rftwin_demo' or prose 'rftwin's'
COMMAND = re.compile(r"(?<![\w./-])(?:\S*/)?rftwin (?P<rest>[a-z][a-z-]*(?: .*)?)$")
# where one command's text ends: pipes, shell separators, the next sentence of a span
END = re.compile(r"\s(?:\||&&|;|>|#)\s|`")


@dataclass(frozen=True)
class Mention:
    """One `rftwin CMD ...` text: file and line it starts on, the command path, and the text after it."""

    where: str
    command: str
    text: str


def code_texts(md: str) -> list[tuple[int, str]]:
    """(line number, text) of every code span and every line of a fenced or indented code block of ``md``."""
    out: list[tuple[int, str]] = []
    lines = md.splitlines()
    fenced = False
    block: list[tuple[int, str]] = []  # a fenced block's lines, joined where a line ends with '\\'
    for i, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or (line.startswith("    ") and line.strip() and not line.lstrip().startswith(("-", "*", "|"))
                      and (i == 1 or not lines[i - 2].strip() or lines[i - 2].startswith("    "))):
            block.append((i, line.strip()))
            continue
        out += [(i, m.group(1)) for m in re.finditer(r"`([^`]+)`", line)]
    # continuation lines of a usage block ('rftwin x [--a]' then an indented '[--b]') belong to the command above
    joined: list[tuple[int, str]] = []
    for i, text in block:
        if joined and (joined[-1][1].endswith("\\") or (text.startswith("[") and "rftwin " in joined[-1][1])):
            joined[-1] = (joined[-1][0], joined[-1][1].rstrip("\\") + " " + text)
        else:
            joined.append((i, text))
    return out + joined


def commands() -> dict[str, click.Command]:
    """Every command path ('predict', 'bench', 'bench wedt', ...) -> its click command."""
    root = typer.main.get_command(app)
    out: dict[str, click.Command] = {}
    for name, cmd in root.commands.items():
        out[name] = cmd
        for sub, c in getattr(cmd, "commands", {}).items():
            out[f"{name} {sub}"] = c
    return out


def mentions(md: str, source: str, known: dict[str, click.Command]) -> list[Mention]:
    """Every `rftwin CMD ...` in the code of ``md`` (text up to a pipe, a shell separator or the span's end)."""
    found = []
    for line_no, text in code_texts(md):
        for part in re.split(r"(?=(?<![\w./-])(?:\S*/)?rftwin [a-z])", text):
            m = COMMAND.search(part.strip())
            if not m:
                continue
            rest = END.split(m.group("rest"))[0]
            words = rest.split()
            cmd = words[0]
            if len(words) > 1 and f"{cmd} {words[1]}" in known:
                cmd = f"{cmd} {words[1]}"
            found.append(Mention(f"{source}:{line_no}", cmd, rest))
    return found


def option_names(cmd: click.Command) -> set[str]:
    names = {"--help"}
    for p in cmd.params:
        names |= set(p.opts) | set(getattr(p, "secondary_opts", []))
    return names


def option_problems(m: Mention, known: dict[str, click.Command]) -> list[str]:
    """What is wrong with one mention: an unknown command, options the command lacks, stated defaults that
    differ from the command's."""
    if m.command not in known:
        return [f"{m.where}: 'rftwin {m.command}' is not a command ({', '.join(sorted(known))})"]
    cmd = known[m.command]
    have = option_names(cmd)
    bad = []
    for opt in OPTION.findall(m.text):
        for o in opt.split("/"):
            if o not in have:
                bad.append(f"{m.where}: rftwin {m.command} has no option {o}")
    by_opt = {o: p for p in cmd.params for o in p.opts}
    for opt, value in stated_defaults(m.text):
        p = by_opt.get(opt)
        if p is None or getattr(p, "is_flag", False):
            continue
        default = p.default if p.default is not None else help_default(p)
        if default is None:
            bad.append(f"{m.where}: rftwin {m.command} [{opt} {value}]: the command states no default (write a "
                       "placeholder such as N or FILE, or give the value outside brackets)")
        elif not _same(value, default):
            bad.append(f"{m.where}: rftwin {m.command} [{opt} {value}]: the default is {default}")
    return bad


def stated_defaults(text: str) -> list[tuple[str, str]]:
    """(option, value) pairs inside the [...] groups of a usage line: such a value states the option's default,
    unless it is a placeholder (upper case: N, FILE, X,Y,Z), a choice list (a|b) or a file or folder name."""
    pairs = []
    for group in re.findall(r"\[([^\[\]]*)\]", text):
        try:
            words = shlex.split(group)
        except ValueError:
            words = group.split()
        for opt, value in zip(words, words[1:] + [""]):
            if not OPTION.fullmatch(opt) or "/" in opt or not value or value.startswith("--"):
                continue
            if value.upper() == value and not re.fullmatch(r"[-+0-9.eE,]+", value) or "|" in value \
                    or value.startswith("<") or "/" in value or re.search(r"\.[a-z]+[0-9]?$", value) or "…" in value:
                continue
            pairs.append((opt, value))
    return pairs


def help_default(p: click.Parameter):
    """The default an option without a fixed one states in its help ('(default 30)', 'default: 0.5'), else None."""
    m = re.search(r"default:? ([^;)]+)", getattr(p, "help", None) or "")
    return m.group(1).strip().rstrip(".") if m else None


def _same(text: str, default) -> bool:
    if isinstance(default, bool) or isinstance(default, (list, tuple)):
        return False
    try:
        a, b = float(text), float(default)
        return abs(a - b) <= 1e-9 * max(1.0, abs(b))
    except (TypeError, ValueError):
        return str(default) == text


KNOWN = commands()
ALL = [m for p in DOCS for m in mentions(p.read_text(), str(p.relative_to(ROOT)), KNOWN)]


def test_docs_mention_commands():
    assert len(ALL) > 50 and {m.command for m in ALL} >= {"calibrate", "predict", "demo", "bench wedt"}


@pytest.mark.parametrize("doc", [p.relative_to(ROOT).as_posix() for p in DOCS])
def test_every_documented_option_exists_with_its_default(doc):
    problems = [msg for m in ALL if m.where.startswith(doc + ":") for msg in option_problems(m, KNOWN)]
    assert not problems, "\n".join(problems)


def test_the_check_catches_wrong_options_and_defaults():
    """The same extraction on a page with deliberate mistakes finds each of them."""
    md = ("Run `rftwin predict room links.csv --out p.csv --no-diffuse` or\n\n"
          "```\nrftwin bench wedt [--quick] [--d2d-rx 64] \\\n    --samples-per-src 1000\n```\n\n"
          "    rftwin demo [--trials 3]\n    [--receivers 8]\n\n"
          "and `rftwin calibrate SCENE M --out D --prior labels` (fine), `rftwin frobnicate --x`.\n")
    ms = mentions(md, "bad.md", KNOWN)
    problems = [msg for m in ms for msg in option_problems(m, KNOWN)]
    assert len(ms) == 5, ms
    assert any("predict has no option --no-diffuse" in p for p in problems), problems
    assert any("[--d2d-rx 64]: the default is 30" in p for p in problems), problems
    assert any("demo [--receivers 8]: the default is 32" in p for p in problems), problems
    assert any("'rftwin frobnicate' is not a command" in p for p in problems), problems
    assert not any(p.startswith(("bad.md:13", "bad.md:8: rftwin demo [--trials")) or "samples-per-src" in p
                   for p in problems), problems
    assert len(problems) == 4, problems


def script_options(text: str) -> set[str]:
    """Options a benchmark script reads: its '--option' literals, and those of the rftwin command it hands its
    arguments to (``app(["bench", "priors", ..., *sys.argv[1:]])``)."""
    found = set(re.findall(r"[\"'](--[a-z][a-z0-9-]*)[\"'=]", text))
    for call in re.findall(r"app\(\[([^\]]*sys\.argv[^\]]*)\]", text):
        words = re.findall(r"[\"']([a-z][a-z-]*)[\"']", call)
        for n in (2, 1):
            if " ".join(words[:n]) in KNOWN:
                found |= option_names(KNOWN[" ".join(words[:n])])
                break
    return found


def script_problems(md: str, source: str) -> list[str]:
    """Options shown after `benchmarks/NAME.py` that the script does not read (no '--option' literal in it), and
    options shown anywhere in code that no command and no benchmark script has."""
    every = {o for c in KNOWN.values() for o in option_names(c)}
    scripts = {p.name: p.read_text() for p in (ROOT / "benchmarks").glob("*.py")}
    every |= {o for text in scripts.values() for o in re.findall(r"[\"'](--[a-z][a-z0-9-]*)", text)}
    bad = []
    for line_no, text in code_texts(md):
        for m in re.finditer(r"benchmarks/(\w+\.py)((?:\s+[^\s`|;&]+)*)", text):
            name, rest = m.group(1), END.split(m.group(2))[0]
            if name not in scripts:
                bad.append(f"{source}:{line_no}: no script benchmarks/{name}")
                continue
            reads = script_options(scripts[name])
            bad += [f"{source}:{line_no}: benchmarks/{name} reads no option {o}"
                    for opt in OPTION.findall(rest) for o in opt.split("/") if o not in reads]
        bad += [f"{source}:{line_no}: no command or benchmark has an option {o}"
                for opt in OPTION.findall(text) for o in opt.split("/") if o not in every]
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_benchmark_commands_and_loose_options_exist(doc):
    problems = script_problems(doc.read_text(), doc.relative_to(ROOT).as_posix())
    assert not problems, "\n".join(problems)


def test_script_check_catches_wrong_options():
    md = ("    .venv/bin/python benchmarks/bench_fields.py --bands 8 --no-such-flag\n\n"
          "`benchmarks/bench_nothing.py` and a stray `--definitely-not-an-option`.\n")
    problems = script_problems(md, "bad.md")
    assert any("bench_fields.py reads no option --no-such-flag" in p for p in problems), problems
    assert any("no script benchmarks/bench_nothing.py" in p for p in problems), problems
    assert any("has an option --definitely-not-an-option" in p for p in problems), problems
    assert not any("--bands" in p for p in problems), problems
