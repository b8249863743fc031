-- Newest first, at most ARGV[1], older than message ARGV[2] when one is named.
-- KEYS: 1 the dev inbox's tag; ARGV: 1 limit, 2 before ('' none), 3 recipient ('' all)
local index = key('all')
if ARGV[3] ~= '' then index = key('to', ARGV[3]) end
local top = '+inf'
if ARGV[2] ~= '' then
  local at = redis.call('ZSCORE', key('all'), ARGV[2])
  if not at then return {} end
  top = '(' .. at
end
local ids = redis.call('ZREVRANGEBYSCORE', index, top, '-inf', 'LIMIT', 0, ARGV[1])
if #ids == 0 then return {} end
local keys = {}
for i, id in ipairs(ids) do keys[i] = key('m', id) end
return redis.call('MGET', unpack(keys))
