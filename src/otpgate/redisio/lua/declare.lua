-- Make a subscription durable: its filter in the shard's subs hash (with a new version
-- when it changes, so writers reload them: a random one, which a Redis that lost its data
-- cannot hand out again) and its stream with the consumer group.
-- KEYS: 1 subs, 2 stream; ARGV: 1 name, 2 filter, 3 group, 4 a fresh version.
-- Returns the subs version.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], '~v', ARGV[4])
end
local made = redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[3], '$', 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
  return redis.error_reply(made.err)
end
return redis.call('HGET', KEYS[1], '~v')
