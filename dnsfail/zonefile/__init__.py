"""dnsfail.zonefile."""
