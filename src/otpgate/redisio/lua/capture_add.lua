-- KEYS: 1 the idempotency key's marker, 2 sequence, 3 message, 4 index of all, 5 index of
-- its recipient; ARGV: 1 message id, 2 message. Returns 1 when added, 0 when kept already.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
local n = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[4], n, ARGV[1])
redis.call('ZADD', KEYS[5], n, ARGV[1])
return 1
