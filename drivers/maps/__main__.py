"""``python -m drivers.maps``: rewrite ``drivers/maps/schema.json`` from the pydantic models
(after changing the format; ``tests/unit/test_map_files.py`` compares the two)."""

from drivers.maps.schema import write_json_schema

write_json_schema()
