"""The Django application under test (the benchmark subject)."""
