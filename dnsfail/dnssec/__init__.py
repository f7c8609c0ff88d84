"""DNSSEC online signing: keys (``keys``), the signer (``sign``), compact denial of
existence (``denial``, RFC 9824), flood denial from a zone's NSEC chain (``flood``,
``chain``, ``chained``) and the signed answer path (``path``).

Only ``crypto`` touches the ``cryptography`` package; everything else is pure
functions over immutable data, apart from ``keys`` reading and writing key files.
"""
