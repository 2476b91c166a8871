"""FX passes that rewrite an exported HF model into TensorRT-LLM form.

Every module of this folder is imported (`ditto.registry.import_all`), so each
`@register_pass("name", requires=..., after=..., before=...)` registers its pass; `PIPELINE` is
the one order those constraints allow, computed and checked here at import (an unknown name, a
cycle, or two passes without a declared order between them is an error naming them). To add a
pass: write one module here; nothing else to edit.
"""

from ditto.passes.manager import pipeline
from ditto.registry import import_all

import_all(__name__)

PIPELINE = pipeline()
