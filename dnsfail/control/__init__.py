"""dnsfail.control.api."""
