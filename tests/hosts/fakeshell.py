"""A scripted `CommandRunner`: answers by the command's argv, records every command it got."""

from __future__ import annotations

from collections.abc import Callable

from reaper.agents.base import Command, CommandResult

Answer = CommandResult | Callable[[Command], CommandResult]


class FakeShell:
    def __init__(self, answers: dict[str, Answer], default: CommandResult | None = None) -> None:
        self.answers = answers  # keyed by a substring of " ".join(argv); first match wins
        self.default = default or CommandResult(0, "", "")
        self.commands: list[Command] = []
        self.logs_ref = "/tmp/fake.log"

    async def run(self, command: Command) -> CommandResult:
        self.commands.append(command)
        line = " ".join(command.argv)
        for key, answer in self.answers.items():
            if key in line:
                return answer(command) if callable(answer) else answer
        return self.default
