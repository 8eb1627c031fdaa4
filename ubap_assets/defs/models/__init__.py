"""Group "models"."""
