-- KEYS: 1 key; ARGV: 1 expected value, 2 new value. Returns 1 when replaced.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
