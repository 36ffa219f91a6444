"""From an engine's outcome to what people and CI read: the report model, gates, rendering.

``model`` computes results, intervals and differences; ``gate`` evaluates the
checks; ``render`` writes JSON, tables, CSV/TSV, Markdown and JUnit.
"""
