"""Group "segments"."""
