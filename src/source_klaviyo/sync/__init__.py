"""The embedded default: `source-klaviyo sync` into a local DuckDB file, and `source-klaviyo demo`.

Entry points for the CLI live in `commands.py`; the layout of the file in `layout.py` and
`duckdb_store.py`; see docs/local-sync.md.
"""
