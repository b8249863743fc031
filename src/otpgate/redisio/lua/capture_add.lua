-- KEYS: 1 the dev inbox's tag; ARGV: 1 idempotency key, 2 message id, 3 recipient,
-- 4 message. Returns 1 when added, 0 when a message with that key is kept already.
if not redis.call('SET', key('k', ARGV[1]), ARGV[2], 'NX') then return 0 end
local n = redis.call('INCR', key('seq'))
redis.call('SET', key('m', ARGV[2]), ARGV[4])
redis.call('ZADD', key('all'), n, ARGV[2])
redis.call('ZADD', key('to', ARGV[3]), n, ARGV[2])
return 1
