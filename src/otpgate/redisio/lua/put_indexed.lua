-- KEYS: 1 the value's key, 2 its index; ARGV: 1 value, 2 score, 3 member.
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
