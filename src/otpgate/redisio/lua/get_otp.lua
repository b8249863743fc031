-- ARGV: 1 OTP id. Returns otp_of(id).
return otp_of(ARGV[1])
