"""Small helpers shared across packages (atomic file writes)."""

from vla_parl.utils.files import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text, fsync_dir

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "fsync_dir"]
