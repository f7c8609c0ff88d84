"""dnsfail.drill.drill."""
