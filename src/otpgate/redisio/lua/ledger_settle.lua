-- A send's outcome, recorded only while the claim numbered `claimed` still holds it.
-- ARGV[1]: msgpack {OTP id, field, claimed attempts, new entry, now, subs version ('' no
--   events), driver, provider id ('' none: no pointer here), pointer value, events}
-- Returns 1 recorded, 0 no longer held, -1 when the subscriptions changed.
local p = cmsgpack.unpack(ARGV[1])
local id, field, claimed, new, now, subs = p[1], p[2], p[3], p[4], p[5], p[6]
local driver, provider_id, pointer, events = p[7], p[8], p[9], p[10]
local ledger = key('l', id)
local current = redis.call('HGET', ledger, field)
if not current then return 0 end
local entry = cmsgpack.unpack(current)
if entry.status ~= 'sending' or entry.attempts ~= claimed then return 0 end
if subs ~= '' and not fresh(subs) then return -1 end
redis.call('HSET', ledger, field, new)
if provider_id ~= '' then redis.call('SET', key('w', 's', driver, provider_id), pointer) end
emit(events, now)
return 1
