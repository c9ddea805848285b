"""The checks, one module per family of verdicts; each reads a Context and returns verdicts."""
