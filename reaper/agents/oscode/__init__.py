"""OS action code: one module per OS (`linux`, `macos`, `windows`), each exporting `ACTIONS`,
an object with `async run(verb, params, shell, *, host_id) -> ActionOutcome` that turns an action
into commands for a `CommandRunner` and parses their output into structured facts.

`posix` holds the parsing the Linux and macOS code share; `baseline` the baseline contract
(items reported changed / unchanged / would_change / skipped / unavailable / failed).
"""
