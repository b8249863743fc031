-- Forget one shard's finished OTPs (record and ledger) and idle recipients.
-- KEYS: 1 done, 2 touched
-- ARGV: 1 OTPs finished before, 2 recipients idle since before, 3 batch, 4 key prefix
-- Returns {OTP ids gone, {driver, provider id, ...} of their sends, recipients gone}.
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[3])
local sent = {}
for _, id in ipairs(gone) do
  local ledger = ARGV[4] .. 'l:' .. id
  for _, blob in ipairs(redis.call('HVALS', ledger)) do
    local entry = cmsgpack.unpack(blob)
    if type(entry.provider_id) == 'string' then
      table.insert(sent, entry.driver)
      table.insert(sent, entry.provider_id)
    end
  end
  redis.call('DEL', ARGV[4] .. 'o:' .. id, ledger)
  redis.call('ZREM', KEYS[1], id)
end
local idle = 0
local since = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, key in ipairs(since) do
  local state = ARGV[4] .. 'r:' .. key
  local pending = redis.call('HGET', state, 'p')
  if not pending or pending == '0' then
    redis.call('DEL', state)
    redis.call('ZREM', KEYS[2], key)
    idle = idle + 1
  end
end
return {gone, sent, idle}
