-- Make a subscription durable in one shard: its filter in the subs hash (with a new
-- version when it changes, so writers reload them: a random one, which a Redis that lost
-- its data cannot hand out again) and its stream with the consumer group.
-- ARGV: 1 name, 2 filter, 3 group, 4 a fresh version. Returns the subs version.
if redis.call('HGET', key('subs'), ARGV[1]) ~= ARGV[2] then
  redis.call('HSET', key('subs'), ARGV[1], ARGV[2], '~v', ARGV[4])
end
local made = redis.pcall('XGROUP', 'CREATE', key('q', ARGV[1]), ARGV[3], '$', 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
  return redis.error_reply(made.err)
end
return redis.call('HGET', key('subs'), '~v')
