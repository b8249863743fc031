"""Pure domain: codes, policy, recipients, the OTP record and its state machine. No I/O."""
