"""otpgate: an event-driven one-time passcode gateway."""

__version__ = "0.1.0"
