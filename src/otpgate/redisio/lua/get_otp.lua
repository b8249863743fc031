-- KEYS: 1 the OTP's record; ARGV: 1 the state key prefix of its shard.
return otp_of(KEYS[1], ARGV[1])
