"""The interactive `noma> ` prompt (prompt_toolkit), used when stdin is a terminal.

Owns: the PromptSession (prompt `noma> `, continuation `  ... `), the Enter rule (submit only when
noma.compiler.front.parse.is_complete says the input is finished, or for a `:command`; Alt-Enter always
inserts a newline), syntax highlighting through noma.lexer.NomaLexer, tab completion
(noma.repl.completion), the persistent history file (Ctrl-R searches it), Ctrl-C at the prompt
(clears the line), Ctrl-C after Enter (cancels or stops the input, however soon it comes: see
SigintRecorder) and Ctrl-D (exits). Running inputs is ReplCore's job.
Imports: prompt_toolkit, pygments (via prompt_toolkit.lexers), noma.repl.core.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

from prompt_toolkit import PromptSession
from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import has_focus
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.styles import Style

from noma.repl.completion import NomaCompleter
from noma.repl.core import ReplCore

PROMPT = "noma> "
CONTINUATION = "  ... "

STYLE = Style.from_dict({
    "prompt": "ansicyan bold",
    "continuation": "ansibrightblack",
    "pygments.keyword": "ansimagenta bold",
    "pygments.keyword.declaration": "ansiblue bold",
    "pygments.keyword.pseudo": "ansiyellow bold",
    "pygments.name.builtin": "ansicyan",
    "pygments.name.function": "ansigreen",
    "pygments.literal.number": "ansiyellow",
    "pygments.literal.string": "ansigreen",
    "pygments.comment": "ansibrightblack italic",
    "pygments.operator": "ansired",
})


def history_path() -> Path:
    """NOMA_HISTORY_FILE, else $XDG_STATE_HOME/noma/history, else ~/.local/state/noma/history."""
    explicit = os.environ.get("NOMA_HISTORY_FILE")
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "noma" / "history"


def open_history() -> History:
    """The file history, or an in-memory one when the file cannot be created."""
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


def should_submit(text: str) -> bool:
    """Enter submits a `:command`, an empty line, or code that forms complete statements."""
    from noma.compiler.front.parse import is_complete

    stripped = text.strip()
    if not stripped or (stripped.startswith(":") and "\n" not in stripped):
        return True
    try:
        return is_complete(text)
    except Exception:
        return True  # let the compiler report whatever is wrong


def key_bindings() -> KeyBindings:
    kb = KeyBindings()
    focused = has_focus(DEFAULT_BUFFER)

    @kb.add("enter", filter=focused)
    def _enter(event: Any) -> None:
        buffer = event.current_buffer
        if buffer.complete_state is not None and buffer.complete_state.current_completion:
            buffer.apply_completion(buffer.complete_state.current_completion)
            return
        if should_submit(buffer.text):
            setattr(event.app, "noma_submitted_at", time.monotonic())  # a SIGINT from now on is for this input
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    @kb.add("escape", "enter", filter=focused)
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    @kb.add("c-c")
    def _ctrl_c(event: Any) -> None:
        app = event.app
        if app.is_done:  # Enter already submitted the input: this Ctrl-C is for the input
            app.noma_ctrl_c_after_submit = True  # (see typed_ctrl_c)
            return
        app.exit(exception=KeyboardInterrupt, style="class:aborting")  # at the prompt: clear the line

    return kb


def _continuation(width: int, line_number: int, wrap_count: int) -> Any:
    return [("class:continuation", CONTINUATION.rjust(width))]


def make_prompt_session(core: ReplCore, history: Optional[History] = None) -> PromptSession:
    from noma.lexer import NomaLexer

    return PromptSession(
        message=[("class:prompt", PROMPT)],
        multiline=True,
        prompt_continuation=_continuation,
        lexer=PygmentsLexer(NomaLexer),
        completer=NomaCompleter(lambda: core.session),
        complete_while_typing=False,
        history=history if history is not None else open_history(),
        enable_history_search=False,
        key_bindings=key_bindings(),
        style=STYLE,
        include_default_pygments_style=False,
        mouse_support=False,
    )


def typed_ctrl_c(prompt: PromptSession) -> bool:
    """Whether Ctrl-C was pressed after Enter while prompt_toolkit still held the terminal in raw
    mode, where it is a key, not SIGINT: prompt_toolkit handled it as it finished the prompt (our
    c-c binding noted it), or it is still in the terminal's input queue (read here, without
    waiting, with the terminal sending SIGINT for a Ctrl-C that comes meanwhile). Keys other than
    Ctrl-C stay typed ahead for the next prompt."""
    from prompt_toolkit.input.typeahead import get_typeahead, store_typeahead
    from prompt_toolkit.input.vt100_parser import Vt100Parser
    from prompt_toolkit.keys import Keys

    pressed = bool(getattr(prompt.app, "noma_ctrl_c_after_submit", False))
    setattr(prompt.app, "noma_ctrl_c_after_submit", False)  # our flag on prompt_toolkit's Application
    source = prompt.input
    keys = list(get_typeahead(source))
    parser = Vt100Parser(keys.append)
    parser.feed(_pending_input().decode("utf-8", "replace"))
    parser.flush()
    pressed = pressed or any(k.key == Keys.ControlC for k in keys)
    store_typeahead(source, [k for k in keys if k.key != Keys.ControlC])
    return pressed


def _pending_input() -> bytes:
    """The bytes waiting in the terminal's input queue (read in non-canonical mode with ISIG on,
    so a Ctrl-C arriving meanwhile is SIGINT as usual); b"" when stdin is not a terminal."""
    import termios

    fd = sys.stdin.fileno()
    try:
        saved = termios.tcgetattr(fd)
    except (termios.error, OSError, ValueError):
        return b""
    mode = list(saved)
    mode[3] &= ~(termios.ICANON | termios.ECHO)  # lflag: byte-wise, no echo; ISIG stays on
    mode[6] = list(saved[6])
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 0, 0  # read returns what is there
    data = b""
    try:
        termios.tcsetattr(fd, termios.TCSANOW, mode)
        while True:
            chunk = os.read(fd, 1024)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
    return data


class SigintRecorder:
    """The REPL's SIGINT handler between inputs (while prompting, and from Enter until the input's
    own handler takes over in ReplCore.handle): it notes when SIGINT came, so that a Ctrl-C
    pressed just after Enter is honoured whatever the REPL was doing (prompt_toolkit tearing down
    its event loop, which lost signals arriving then; leaving raw mode; checking typed-ahead keys).
    At the prompt itself, where the terminal is in raw mode, Ctrl-C is a key (the c-c binding);
    a SIGINT that comes while the prompt still reads input (before raw mode, or from `kill`)
    clears the line as that key does."""

    def __init__(self) -> None:
        self.last = -1.0
        self.app: Any = None  # the prompt's Application while it reads input

    def __call__(self, signum: int, frame: Any) -> None:
        self.last = time.monotonic()
        app = self.app
        loop = getattr(app, "loop", None)
        if app is not None and loop is not None and app.is_running and not app.is_done:
            loop.call_soon_threadsafe(_clear_line, app)

    def since(self, moment: float) -> bool:
        """Whether SIGINT came at or after `moment` (time.monotonic())."""
        return self.last >= moment


def _clear_line(app: Any) -> None:
    if app.is_running and not app.is_done:
        app.exit(exception=KeyboardInterrupt, style="class:aborting")


def run_interactive(core: ReplCore) -> int:
    """The prompt loop: read, run, repeat until Ctrl-D or `:quit`. Ctrl-C pressed after Enter
    cancels the input (before it runs) or stops it (while it runs), however soon after Enter:
    as a key while prompt_toolkit still held the terminal in raw mode (typed_ctrl_c), as a
    SIGINT noted by the recorder until the input's own handler is installed, then as a stop
    request to the session."""
    prompt = make_prompt_session(core)
    recorder = SigintRecorder()
    previous = signal.signal(signal.SIGINT, recorder)
    try:
        print(core.banner(), flush=True)
        while True:
            setattr(prompt.app, "noma_submitted_at", float("inf"))
            recorder.app = prompt.app
            try:
                text = prompt.prompt(handle_sigint=False)  # SIGINT is the recorder's, not the event loop's
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt: clear the line
            except EOFError:
                break
            finally:
                recorder.app = None
            submitted: float = getattr(prompt.app, "noma_submitted_at")
            try:
                if text.strip() and (typed_ctrl_c(prompt) or recorder.since(submitted)):
                    core.cancelled()
                    continue
                if not core.handle(text, interrupted=lambda: recorder.since(submitted)):
                    break
            except KeyboardInterrupt:  # (only if something raised it: SIGINT is the recorder's)
                core.cancelled()
        print(flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    return 0
