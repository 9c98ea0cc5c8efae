"""hashbench: a benchmark harness for learning-to-hash image retrieval.

Import names: ``bench`` (the harness: ``python -m bench``), ``hashbench.methods`` (the `Hasher` contract,
the registry, one module per method) and ``hashbench.datasets`` (loaders, protocols and splits, feature
extractors). Nothing else is installed at the top level, so hashbench sits beside Hugging Face
``datasets`` or any other package.

In a source checkout the folders ``methods/`` and ``datasets/`` sit beside this package rather than
inside it (the project's layout); this package then looks for its subpackages there too.
"""
from __future__ import annotations

import os as _os

_here = _os.path.dirname(__file__)
if not _os.path.isdir(_os.path.join(_here, "methods")):  # a checkout, not an installed wheel
    __path__.append(_os.path.dirname(_here))  # type: ignore[name-defined]  # noqa: F821
