"""Load generator and benchmark runner for a local otpgate server (see README.md)."""
