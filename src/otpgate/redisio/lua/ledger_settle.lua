-- A send's outcome, recorded only while the claim numbered ARGV[2] still holds it.
-- KEYS: 1 ledger, 2 subs, 3 provider pointer (or the ledger), 4.. streams
-- ARGV: 1 field, 2 claimed attempts, 3 new entry, 4 now, 5 subs version,
--       6 pointer value ('' none), 7.. events
-- Returns 1 recorded, 0 no longer held, -1 when the subscriptions changed.
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local entry = cmsgpack.unpack(current)
if entry.status ~= 'sending' or entry.attempts ~= tonumber(ARGV[2]) then return 0 end
if tonumber(ARGV[7]) > 0 and not fresh(KEYS[2], ARGV[5]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[6] ~= '' then redis.call('SET', KEYS[3], ARGV[6]) end
emit(7, ARGV[4])
return 1
