"""The triage engine: encoder, taxonomy, classify, priority, summary, draft. Plain Python, no Django."""
