-- Newest first, at most ARGV[1], older than message ARGV[2] when one is named.
-- KEYS: 1 the index to read (all, or one recipient's), 2 index of all
-- ARGV: 1 limit, 2 before ('' none), 3 message key prefix
local top = '+inf'
if ARGV[2] ~= '' then
  local at = redis.call('ZSCORE', KEYS[2], ARGV[2])
  if not at then return {} end
  top = '(' .. at
end
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], top, '-inf', 'LIMIT', 0, ARGV[1])
if #ids == 0 then return {} end
local keys = {}
for i, id in ipairs(ids) do keys[i] = ARGV[3] .. id end
return redis.call('MGET', unpack(keys))
