"""Modal dialogs: the episode's outcome, a note, a yes/no question, the key help.

Space stays the e-stop inside every dialog (an app-level priority binding), so a note is
typed with `_` between words; it is saved with spaces.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class OutcomeDialog(ModalScreen[str | None]):
    """How did the episode end? s / f / b, or escape to keep recording."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "choose('success')", "Success"),
        Binding("f", "choose('failure')", "Failure"),
        Binding("b", "choose('aborted')", "Abort"),
        Binding("escape", "choose(None)", "Keep recording"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text.assemble(
                ("End the episode\n\n", "bold"),
                ("s", "bold green"), "  success (docked)\n",
                ("f", "bold red"), "  failure\n",
                ("b", "bold yellow"), "  abort (no verdict: not counted)\n\n",
                ("escape", "bold"), "  keep recording"))

    def action_choose(self, outcome: str | None) -> None:
        self.dismiss(outcome)


class NoteDialog(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, initial: str = "") -> None:
        super().__init__()
        self.initial = initial

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text.assemble(("Note for the episode\n", "bold"),
                                       ("space is the e-stop: type _ between words\n", "dim")))
            yield Input(value=self.initial.replace(" ", "_"), placeholder="what_happened",
                        id="note")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.replace("_", " ").strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text.assemble((self.question, "bold"), "\n\n",
                                       ("y", "bold"), " yes    ", ("n", "bold"), " no"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,h", "close", "Close")]

    def __init__(self, text: Text) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help"):
            yield Static(self.text)

    def action_close(self) -> None:
        self.dismiss(None)
