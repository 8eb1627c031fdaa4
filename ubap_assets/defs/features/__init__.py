"""Group "features"."""
