"""Stores: where OTP state lives. Chosen by URL through ``otpgate.registry``."""
