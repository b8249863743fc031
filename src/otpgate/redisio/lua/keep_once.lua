-- KEYS: 1 key; ARGV: 1 value. Keeps the value unless one is kept; returns the one kept.
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET') or ARGV[1]
