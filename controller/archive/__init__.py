"""The batch archive (issue 13): ended, verified batch folders in a database (SQLite by
default, PostgreSQL for a lab), keyed by batch id and final audit hash, for listing,
filtering and comparing, and as a copy of each final hash kept outside the folder.

``db`` opens it (migrations applied), ``ingest`` writes a batch, ``query`` reads, ``compare``
tabulates and overlays, ``verify`` checks a folder against it; ``schema`` is the tables.
"""
