"""The ``convnext`` command (also ``python -m convnext_app``).

Every subcommand is a module with the same shape (see :mod:`convnext_app.commands`): ``HELP``,
``DESCRIPTION``, ``EPILOG``, ``add_arguments(parser)`` and ``run(args) -> exit code``. They are
registered from one list, :data:`BUILTIN`. A module is imported when the parser is built, and
its work (torch, TensorFlow, the twins) only inside ``run``: so ``convnext --help`` and importing
this module load neither framework, and a subcommand whose module is absent reports that in one line.

To add a subcommand ``NAME``: write ``convnext_app/commands/NAME.py`` with those five names and
add ``"NAME"`` to :data:`BUILTIN` (or, from elsewhere, ``register("NAME", "package.module")``).

Errors: one line on stderr (``convnext <command>: error: ...``, :mod:`convnext_app.errors`) and a
non-zero exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Optional, Sequence

from convnext_app.commands.common import PROG
from convnext_app.errors import report

#: the subcommands, in the order ``convnext --help`` lists them: modules of convnext_app.commands
BUILTIN = ("predict", "embed", "evaluate", "train", "pretrain", "convert", "export", "quantize")

#: subcommand name -> the module that implements it
COMMANDS: dict[str, str] = {name: f"convnext_app.commands.{name}" for name in BUILTIN}


def register(name: str, module: str) -> None:
    """Add the subcommand ``name``, implemented by the (dotted) ``module``."""
    COMMANDS[name] = module


class CommandUnavailable(ImportError):
    """The module that implements a subcommand is not installed or not part of this build."""


_HOOKS = ("HELP", "DESCRIPTION", "EPILOG", "add_arguments", "run")


def load_command(name: str) -> ModuleType:
    """The module of subcommand ``name``; CommandUnavailable (one line) when it cannot be used."""
    module_name = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise CommandUnavailable(f"'{name}' is not available: module {module_name} is missing") from None
        raise CommandUnavailable(f"'{name}' needs the package {e.name!r}, which is not installed") from None
    missing = [hook for hook in _HOOKS if not hasattr(module, hook)]
    if missing:
        raise CommandUnavailable(f"'{name}' is not available: {module_name} has no {', '.join(missing)}")
    return module


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _selected_command(argv: Sequence[str]) -> Optional[str]:
    for token in argv:
        if token in COMMANDS:
            return token
        if not token.startswith("-"):
            return None
    return None


def build_parser(selected: Optional[str] = None) -> argparse.ArgumentParser:
    """The full parser; only ``selected``'s arguments are added."""
    parser = _Parser(prog=PROG, description="ConvNeXt for PyTorch and Keras: predict, evaluate, fine-tune and "
                     "convert checkpoints. With no --model, commands use the embedded digits model.",
                     epilog=f"Run '{PROG} COMMAND --help' for the options of a command. "
                            f"First try: '{PROG} predict'.")
    from convnext_common import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = load_command(name)
        except CommandUnavailable as e:
            if name == selected:
                raise
            sub.add_parser(name, help=f"(unavailable: {e})")
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION or module.HELP,
                           epilog=module.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == selected:
            module.add_arguments(p)
            if "--debug" not in p._option_string_actions:
                p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help="show the full traceback of an error")
            p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _selected_command(argv)
    debug = "--debug" in argv
    label = f"{PROG} {command}" if command else PROG
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return 2
        args._argv = argv  # the command as given, for a command that runs itself again (export on TensorFlow)
        return int(args._run(args) or 0)
    except (KeyboardInterrupt, Exception) as e:  # noqa: BLE001  every error becomes one line unless --debug
        if debug:
            raise
        return report(label, e)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
