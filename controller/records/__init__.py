"""The batch on disk: the hash-chained audit, the trace, the batch folder, disk space,
verification and the anchor log. Knows files, not furnaces."""
