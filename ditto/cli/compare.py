"""Compare two step dumps tensor by tensor: two step files (step0.pt, step0.safetensors) or
two dump folders (every step{i}, paired by index).

Per tensor present on both sides: shape and dtype, max and mean abs error, max relative
error, cosine similarity, share of elements out of tolerance, the worst element's index
and values, NaN/Inf counts. B is the reference: an element passes when
|a - b| <= atol + rtol * |b|. Default tolerances per dtype (float32 1e-4, float16 1e-2,
bfloat16 5e-2, integers exact; ditto.comparator.tolerances), atol times max(1, max |b|) of the
tensor; --atol/--rtol are taken as given. Exit status: 0 when everything is within tolerance; 1 when
any tensor is out of tolerance, holds a NaN or differs in shape, or when a name or step is
present on one side only (use --alias for renamed tensors); 2 on bad input (missing file,
not a step dump).
"""

from __future__ import annotations

import json

from ditto.errors import DittoError


def add_arguments(parser) -> None:
    parser.add_argument("a", help="step file or dump folder (A)")
    parser.add_argument("b", help="step file or dump folder (B, the reference)")
    parser.add_argument("--atol", type=float, help="absolute tolerance for every tensor (default: per dtype, times max(1, max |B|))")
    parser.add_argument("--rtol", type=float, help="relative tolerance for every tensor (default: per dtype)")
    parser.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="NAME_A=NAME_B",
        help="compare tensor NAME_A of A with NAME_B of B (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")


def run(args) -> int:
    from ditto.api import compare
    from ditto.comparator import format_table, to_json

    result = compare(args.a, args.b, atol=args.atol, rtol=args.rtol, aliases=parse_aliases(args.alias))
    print(json.dumps(to_json(result), indent=2) if args.json else format_table(result))
    return 0 if result.passed else 1


def parse_aliases(items: list[str]) -> dict[str, str]:
    """['a=b', ...] -> {'a': 'b'}; the first '=' splits."""
    aliases: dict[str, str] = {}
    for item in items:
        name_a, sep, name_b = item.partition("=")
        if not sep or not name_a or not name_b:
            raise DittoError(f"--alias {item!r}: write NAME_A=NAME_B, e.g. --alias mm_default=layers.0.attn.qkv")
        if name_a in aliases:
            raise DittoError(f"--alias {name_a} is given twice ({aliases[name_a]}, {name_b}); keep one")
        aliases[name_a] = name_b
    return aliases
