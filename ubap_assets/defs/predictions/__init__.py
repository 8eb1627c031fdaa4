"""Group "predictions"."""
