"""dnsfail: an authoritative DNS server for health-checked failover and geo routing."""

__version__ = "0.1.0"
