"""Entry point of the `ditto` command.

Each subcommand is a module `ditto.cli.<name>` with `add_arguments(parser)` and
`run(args) -> int`; adding one is one line in COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback

from ditto.cli.errors import Terminated, error_line
from ditto.fsutil import deferred_interrupts

# name -> one-line help. Add a subcommand by adding its module and one line here.
COMMANDS = {
    "build": "build a TensorRT-LLM engine directory from a Hugging Face model",
    "run": "stepwise inference on ditto's own backends, writing step dumps",
    "compare": "compare two step dumps (files or folders) tensor by tensor",
    "export": "export a model and run the passes; print or dump the TRT-LLM-form graph",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ditto",
        description="Turn a Hugging Face decoder-only LM into a TensorRT-LLM engine, and prove it computes the same.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error (also DITTO_DEBUG=1; accepted anywhere on the line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text in COMMANDS.items():
        try:
            module = importlib.import_module(f"ditto.cli.{name}")
        except ModuleNotFoundError as e:  # a subcommand still being written must not break the others
            if e.name != f"ditto.cli.{name}":
                raise
            continue
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; every failure ends as one line on stderr (ditto.cli.errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("DITTO_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]  # accepted anywhere on the line
    command = "ditto"
    received: list[int] = []  # the signals that arrived while the command ran

    def interrupt(signum, frame):
        received.append(signum)
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)} if _main_thread() else {}
    try:
        with deferred_interrupts():  # torch's and the subcommands' imports: a Ctrl-C there is delivered after them
            parser = build_parser()  # (raised inside a C extension's import, it can abort the process)
        args = parser.parse_args(argv)
        command = f"ditto {args.command}"
        return int(args._module.run(args) or 0)
    except SystemExit:
        raise  # argparse's usage errors and --help
    except BaseException as e:
        if debug:
            traceback.print_exc()
        if received and not isinstance(e, KeyboardInterrupt):
            # the user's Ctrl-C, turned into another error by a library that caught it (transformers'
            # lazy import reports it as a missing module): the interrupt is what ended the command
            e = Terminated() if received[0] == signal.SIGTERM else KeyboardInterrupt()
        code, line = error_line(e, debug)
        print(f"{command}: {line}", file=sys.stderr)
        return code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
