-- An OTP and its whole send ledger, read together.
-- KEYS: 1 OTP record, 2 ledger; ARGV: 1 state key prefix. Returns {otp, ledger pairs}.
return {otp_of(KEYS[1], ARGV[1]), redis.call('HGETALL', KEYS[2])}
