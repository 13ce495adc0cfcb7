"""`cirgraph chat`: refine a search over several messages in the terminal.

Each message changes the current target ("make it red", then "with long sleeves"); "/pick N" or "the second one"
starts from a result, "/image PATH" from a new image. Stage progress is shown while a search runs, results as a
table of ranks, ids, scores and paths. The conversation is saved under its thread id: `--thread ID` resumes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import typer

from cirgraph.cli import app
from cirgraph.cli._presets import chosen_preset, preset_option

if TYPE_CHECKING:
    from rich.console import Console

    from cirgraph.chat.session import ChatSession
    from cirgraph.chat.turns import Turn

HELP = """commands:
  TEXT                 change the current target ("make it red"; "the second one, but blue" picks result 2)
  /image PATH [TEXT]   start from a new reference image
  /ref ID [TEXT]       start from a gallery item
  /pick N [TEXT]       start from result N of the last search
  /undo                take back the last message
  /reset               start over (same thread)
  /history             list the messages so far
  /quit                leave (the conversation is kept; resume with --thread)"""


def open_session(gallery: str, preset: str, thread: str | None, k: int) -> ChatSession:
    """The chat session for `gallery` from Settings (tests replace this function)."""
    from cirgraph.chat.session import ChatSession

    return ChatSession(thread, gallery=gallery, preset=preset, k=k)


def results_table(turn: Turn) -> Any:
    from rich.table import Table

    table = Table(title=f"turn {turn.n}: {len(turn.hits)} results", title_justify="left")
    for col in ("#", "id", "score", "verdict", "path"):
        table.add_column(col, justify="right" if col in ("#", "score", "verdict") else "left", overflow="fold")
    for h in turn.hits:
        table.add_row(str(h.rank), h.id, f"{h.score:.3f}", "" if h.verdict is None else f"{h.verdict:.2f}",
                      h.uri or "")
    return table


def show_turn(out: Console, turn: Turn) -> None:
    say = lambda text: out.print(text, highlight=False, markup=False)  # noqa: E731
    ref = turn.reference
    if turn.kind == "select":
        say(f"reference is now {ref.get('id') or ref.get('name') or 'the uploaded image'}; say what to change")
        return
    out.print(results_table(turn))
    say(f"searched for: {turn.description}")
    for d in turn.explanation.get("degraded") or []:
        say(f"warning: {d['stage']} degraded ({d['reason']}); used {d['fallback']}")


def parse_line(line: str) -> tuple[str, str, str]:
    """(command, argument, text): ("say", "", TEXT) for a plain message, else the /command, its first argument
    (quoted when it holds spaces: /image "my photo.jpg" in red) and the rest."""
    line = line.strip()
    if not line.startswith("/"):
        return "say", "", line
    name, _, rest = line[1:].partition(" ")
    name, rest = name.lower(), rest.strip()
    if name not in ("image", "ref", "pick") or not rest:
        return name, rest, ""
    if rest[0] in "\"'" and rest.find(rest[0], 1) > 0:
        end = rest.find(rest[0], 1)
        return name, rest[1:end], rest[end + 1:].strip()
    first, _, tail = rest.partition(" ")
    return name, first, tail.strip()


def run_turn(session: ChatSession, out: Console, err: Console, text: str, **kwargs: Any) -> None:
    from cirgraph.chat.turns import stage_summary

    with err.status("searching...") as status:
        def progress(stage: str, update: dict[str, Any]) -> None:
            line = stage_summary(stage, update)
            status.update(line)
            if not err.is_terminal:
                err.print(line, highlight=False, markup=False)

        turn = session.send(text, on_stage=progress, **kwargs)
    show_turn(out, turn)


def handle(session: ChatSession, line: str, out: Console, err: Console) -> bool:
    """Act on one input line; False when the user leaves."""
    from cirgraph.agents.query import GalleryRef

    command, arg, text = parse_line(line)
    say = lambda msg: out.print(msg, highlight=False, markup=False)  # noqa: E731
    if command in ("quit", "exit", "q"):
        return False
    if command == "help":
        say(HELP)
    elif command == "say":
        if text:
            run_turn(session, out, err, text)
    elif command == "image" and arg:
        run_turn(session, out, err, text, image=arg)
    elif command == "ref" and arg:
        run_turn(session, out, err, text, image=GalleryRef(arg))
    elif command == "pick" and arg.isdigit():
        run_turn(session, out, err, text, pick=int(arg))
    elif command == "undo":
        removed = session.undo()
        say(f"took back turn {removed.n} ({removed.text or 'new reference'})")
        turns = session.history()
        if turns:
            show_turn(out, turns[-1])
    elif command == "reset":
        session.reset()
        say("started over: give a reference with /image PATH or /ref ID")
    elif command == "history":
        for t in session.history():
            say(f"{t.n}. {t.text or '(new reference)'} -> {t.description or t.reference.get('id') or '-'}")
    else:
        say(f"unknown or incomplete command {line.strip()!r}; /help lists them")
    return True


def resume_command(gallery: str, thread: str, preset: str | None, k: int) -> str:
    """The command that resumes this conversation as it ran: the options given, quoted for a shell."""
    import shlex

    args = ["cirgraph", "chat", "--gallery", gallery, "--thread", thread]
    args += ["--preset", preset] if preset is not None else []
    args += ["-k", str(k)] if k != 10 else []
    return shlex.join(args)


@app.command("chat")
def chat(
    gallery: str = typer.Option("default", "--gallery", "-g", help="The gallery to search."),
    thread: Optional[str] = typer.Option(
        None, "--thread", help="Resume this conversation (default: a new one)."),
    preset: Optional[str] = preset_option(),
    k: int = typer.Option(10, "-k", "--k", min=1, max=100, help="Results per turn."),
) -> None:
    """Refine a search over several messages: each message changes the current target."""
    from rich.console import Console

    from cirgraph.errors import CirgraphError

    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    asked = preset
    preset = chosen_preset(preset)
    session = open_session(gallery, preset, thread, k)
    try:
        turns = session.history()
        out.print(f"thread {session.thread_id} on gallery {session.gallery!r}"
                  f"{f', {len(turns)} turn(s) so far' if turns else ''}; /help lists commands, /quit leaves",
                  highlight=False, markup=False)
        if turns:
            show_turn(out, turns[-1])
        while True:
            try:
                line = input("you> ")
            except EOFError:
                break
            try:
                if not handle(session, line, out, err):
                    break
            except CirgraphError as exc:
                err.print(f"error: {exc}", highlight=False, markup=False)
        out.print(f"bye; resume with: {resume_command(session.gallery, session.thread_id, asked, k)}",
                  highlight=False, markup=False)
    finally:
        session.close()
