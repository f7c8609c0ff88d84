"""dnsfail.steering."""
