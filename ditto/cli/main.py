"""Entry point of the `ditto` command.

Each subcommand is a module `ditto.cli.<name>` with `add_arguments(parser)` and
`run(args) -> int`; adding one is one line in COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ditto.errors import DittoError

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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except DittoError as e:
        print(f"ditto {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ditto {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
