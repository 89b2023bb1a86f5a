"""Many plants' twins trained on Ray: `twin fleet train` and `twin fleet sweep`.

Ray is an optional dependency (`pip install 'plant-twin[fleet]'`). Nothing in this package
imports it at module level: `jobs` runs one plant's `twin train` in any process, `cluster`
connects to (or starts) Ray only when a fleet command asks for it.
"""
