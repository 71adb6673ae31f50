"""The documentation checker (``python -m tools.doccheck check|write|commands``): every command the README and
docs/ show runs, every path they name exists, every generated region is fresh, every figure they quote matches its
source. A developer tool of the checkout, not shipped with the package; ``make test`` runs it (tests/test_docs.py)."""
