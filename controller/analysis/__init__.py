"""After the batch: thermal-analysis events from the trace (pure numpy) and the report."""
