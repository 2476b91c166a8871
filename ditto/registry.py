"""How ditto finds its extensions: every module of a folder is imported, so its decorator runs.

Passes (`ditto/passes/`, `@register_pass`), converters (`ditto/trt/converters/`, `@converter`),
replay layers (`ditto/replay/`, `@replays`) and backends (`ditto/runtime/`, `@register_backend`)
are each registered by a decorator in their own module; `import_all(package)` imports every
module of the package's folder (sorted by name, so registration order is the same on every
machine), which is the only list there is. Adding an extension is one new file in its folder.

A module in these folders must import without side effects beyond registering (optional
packages such as TensorRT are imported lazily inside functions); an import error is a bug and
is raised, never swallowed.
"""

from __future__ import annotations

import importlib
import pkgutil

from ditto.errors import DittoError


def import_all(package: str) -> list[str]:
    """Import every module (and subpackage) directly inside `package`; their names, in import order."""
    names = [info.name for info in pkgutil.iter_modules(importlib.import_module(package).__path__, package + ".")]
    for name in sorted(names):
        importlib.import_module(name)
    return sorted(names)


def add_unique(table: dict, key, value, what: str) -> None:
    """`table[key] = value`, refusing a second, different definition under one key.

    Re-registering the same function (its module re-imported, as pytest does for test modules)
    replaces the entry; a different function under the same key is two modules claiming one
    name, which would make the winner depend on import order.
    """
    old = table.get(key)
    if old is not None and _origin(old) != _origin(value):
        raise DittoError(f"{what} is registered twice: by {_origin(old)} and by {_origin(value)}; rename one of them")
    table[key] = value


def _origin(obj) -> str:
    obj = getattr(obj, "fn", obj)  # a registry record wrapping the function
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
