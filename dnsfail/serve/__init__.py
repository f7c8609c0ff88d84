"""dnsfail.serve."""
