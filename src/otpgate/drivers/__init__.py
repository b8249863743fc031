"""Drivers: one file per provider, chosen by URL scheme (``twilio://SID:TOKEN@+1555...``)."""
