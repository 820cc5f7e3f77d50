"""A test-only app module that fails to import, as an app with a broken import would."""

from __future__ import annotations

raise ImportError("tests.faultapp_import_error: a broken import in the app (a test fault)")
