"""Triage: classify, prioritize, summarize, draft. engine/ is plain Python; the app wraps it."""
