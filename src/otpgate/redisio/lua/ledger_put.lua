-- A ledger entry replaced only if it is still what the caller read (claims, receipts),
-- read together with its OTP.
-- KEYS: 1 ledger, 2 OTP record, 3 subs, 4 provider pointer (or the ledger), 5.. streams
-- ARGV: 1 field, 2 expected entry ('' absent), 3 new entry ('' write nothing),
--       4 state key prefix, 5 now, 6 subs version, 7 pointer value ('' none), 8.. events
-- Returns {1, entry, otp} written (or nothing to write), {0, entry, otp} on a conflict,
-- {-1, entry, otp} when the subscriptions changed.
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
local otp = otp_of(KEYS[2], ARGV[4])
if current ~= ARGV[2] then return {0, current, otp} end
if ARGV[3] ~= '' then
  if tonumber(ARGV[8]) > 0 and not fresh(KEYS[3], ARGV[6]) then return {-1, current, otp} end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  if ARGV[7] ~= '' then redis.call('SET', KEYS[4], ARGV[7]) end
  emit(8, ARGV[5])
end
return {1, current, otp}
