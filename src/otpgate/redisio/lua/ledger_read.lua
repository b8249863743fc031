-- An OTP and its whole send ledger, read together. ARGV: 1 OTP id.
-- Returns {otp_of(id), ledger field/value pairs}.
return {otp_of(ARGV[1]), redis.call('HGETALL', key('l', ARGV[1]))}
