"""dnsfail.dns."""
