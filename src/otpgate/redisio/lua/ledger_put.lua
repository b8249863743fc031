-- A ledger entry replaced only if it is still what the caller read (claims, receipts),
-- read together with its OTP.
-- ARGV[1]: msgpack {OTP id, field, expected entry ('' absent), new entry ('' write
--   nothing), now, subs version ('' no events), events}
-- Returns {1, entry, otp} written (or nothing to write), {0, entry, otp} on a conflict,
-- {-1, entry, otp} when the subscriptions changed.
local p = cmsgpack.unpack(ARGV[1])
local id, field, expected, new, now, subs, events = p[1], p[2], p[3], p[4], p[5], p[6], p[7]
local ledger = key('l', id)
local current = redis.call('HGET', ledger, field) or ''
local otp = otp_of(id)
if current ~= expected then return {0, current, otp} end
if new ~= '' then
  if subs ~= '' and not fresh(subs) then return {-1, current, otp} end
  redis.call('HSET', ledger, field, new)
  emit(events, now)
end
return {1, current, otp}
