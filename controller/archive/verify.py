"""``furnace verify BATCH_DIR --db URL``: the folder's final audit hash against the one the
archive holds for its batch id. A chain rewritten from scratch verifies in itself; only a
copy of its final hash kept elsewhere (the anchor log, the archive) tells it apart.
Not here: checking the folder itself (``controller.records.verify``)."""

from __future__ import annotations

from pathlib import Path

from controller.archive.db import connect
from controller.archive.ingest import archived_hash
from controller.records.folder import BatchFolder

__all__ = ["check_archived"]


def check_archived(url: str, batch_dir: Path) -> tuple[bool, str]:
    """(matches, one line): True when the archive holds the batch with the folder's final
    hash, or does not hold it at all (said so); False when it holds another. Blocking.
    Raises ``ConfigurationError`` for an archive that cannot be opened or a folder
    without a readable audit."""
    folder = BatchFolder.open(batch_dir, needs=())
    records = folder.read_audit()
    batch_id = str(records[0].get("batch_id") or batch_dir.name)
    final_hash = str(records[-1]["hash"])
    engine = connect(url)
    try:
        with engine.connect() as connection:
            archived = archived_hash(connection, batch_id)
    finally:
        engine.dispose()
    if archived is None:
        return True, f"not in the archive (batch {batch_id}): archive it with furnace archive"
    if archived == (final_hash, len(records)):
        return True, (f"matches the archive: {len(records)} records, final hash "
                      f"{final_hash[:16]}...")
    return False, (f"TAMPERED: the archive holds batch {batch_id} with {archived[1]} records "
                   f"ending in {archived[0][:16]}...; the folder has {len(records)} ending in "
                   f"{final_hash[:16]}... (rewritten since it was archived)")
