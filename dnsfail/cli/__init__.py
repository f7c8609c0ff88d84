"""dnsfail.cli.main."""
