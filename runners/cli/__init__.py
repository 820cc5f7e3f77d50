"""The small commands (``serve``, ``ui``, ``memcheck``) and what every command
shares: one-line usage errors, list parsing, signal handling."""
