"""The one exception type for user mistakes (its own module, so ``python -m`` keeps one class)."""


class CliError(Exception):
    """A mistake the user can fix; printed as one line."""
