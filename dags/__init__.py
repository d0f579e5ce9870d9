"""The four stage definitions, shipped in the package; ``modelyard init`` writes files that import them."""
