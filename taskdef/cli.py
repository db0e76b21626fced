"""`scan-root embed`: a task definition in, the same with the defender out (register form)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from scanner.atomic import write_atomically
from scanner.jsonload import InputFileError, load_json, read_bounded

from .embed import DEFAULT_CPU, DEFAULT_IMAGE, DEFAULT_MEMORY, EmbedError, EmbedOptions, embed
from .embed import register_form as to_register_form
from .validate import register_errors

__all__ = ["main"]

EXIT_OK = 0
EXIT_USAGE = 2
# ECS's own bound on a task definition is 64 KiB; a describe output with tags stays far below.
MAX_BYTES = 4 << 20
MAX_DEPTH = 32
MAX_NODES = 200_000

DESCRIPTION = """\
Print TASKDEF with the scan-root defender added as a sidecar (docs/embed.md), in the form
`aws ecs register-task-definition --cli-input-json` takes. TASKDEF is a register-form task
definition or `aws ecs describe-task-definition` output; `-` reads standard input. The result
is checked with botocore's own RegisterTaskDefinition model. Notices go to standard error."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scan-root embed", description=DESCRIPTION)
    p.add_argument("taskdef", metavar="TASKDEF")
    p.add_argument("--console", required=True, metavar="URL", help="where the defender reports")
    p.add_argument(
        "--token-secret",
        required=True,
        metavar="ARN",
        help="Secrets Manager secret or SSM parameter holding the ingest token",
    )
    p.add_argument("--image", default=DEFAULT_IMAGE, help=f"the defender's image ({DEFAULT_IMAGE})")
    p.add_argument("--cpu", type=int, default=DEFAULT_CPU, help=f"CPU units ({DEFAULT_CPU})")
    p.add_argument("--memory", type=int, default=DEFAULT_MEMORY, help=f"MiB ({DEFAULT_MEMORY})")
    p.add_argument("--output", metavar="FILE", help="write here instead of standard output")
    return p


def _read(source: str) -> object:
    if source == "-":
        data = sys.stdin.buffer.read(MAX_BYTES + 1)
    else:
        data = read_bounded(source, what=source, max_bytes=MAX_BYTES)
    return load_json(
        data,
        what="the task definition" if source == "-" else source,
        max_bytes=MAX_BYTES,
        max_depth=MAX_DEPTH,
        max_nodes=MAX_NODES,
        unique_keys=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        document = _read(args.taskdef)
        form, _ = to_register_form(document)
        _refuse_invalid(form, "the task definition given")
        result = embed(document, _options(args))
        _refuse_invalid(result.document, "the task definition made (a bug in scan-root embed)")
    except (InputFileError, EmbedError) as error:
        print(f"scan-root embed: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as error:
        # The judge is botocore's, an extra: without it nothing is printed unjudged.
        print(
            f"scan-root embed: {error.name} is not installed: embed needs "
            "`pip install 'scan-root[embed]'` (install.sh installs it)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    for notice in result.notices:
        print(f"scan-root embed: {notice}", file=sys.stderr)
    text = json.dumps(result.document, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        try:
            write_atomically(args.output, text.encode("utf-8"), 0o644)
        except OSError as error:
            print(f"scan-root embed: {args.output}: {error.strerror}", file=sys.stderr)
            return EXIT_USAGE
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _options(args: argparse.Namespace) -> EmbedOptions:
    return EmbedOptions(
        console=args.console,
        token_secret=args.token_secret,
        image=args.image,
        cpu=args.cpu,
        memory=args.memory,
    )


def _refuse_invalid(document: dict[str, Any], what: str) -> None:
    errors = register_errors(document)
    if errors:
        raise EmbedError(
            f"{what} is not valid for RegisterTaskDefinition (botocore): " + "; ".join(errors)
        )
