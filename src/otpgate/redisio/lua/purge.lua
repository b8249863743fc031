-- Forget the shard's finished OTPs (record and ledger) and idle recipients.
-- ARGV: 1 OTPs finished before, 2 recipients idle since before, 3 batch
-- Returns {OTP ids gone, {driver, provider id, ...} of their sends, recipients gone}.
local gone = redis.call('ZRANGEBYSCORE', key('done'), '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[3])
local sent = {}
for _, id in ipairs(gone) do
  for _, blob in ipairs(redis.call('HVALS', key('l', id))) do
    local entry = cmsgpack.unpack(blob)
    if type(entry.provider_id) == 'string' then
      table.insert(sent, entry.driver)
      table.insert(sent, entry.provider_id)
    end
  end
  redis.call('DEL', key('o', id), key('l', id))
  redis.call('ZREM', key('done'), id)
end
local idle = 0
local since = redis.call('ZRANGEBYSCORE', key('touched'), '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, recipient in ipairs(since) do
  local pending = redis.call('HGET', key('r', recipient), 'p')
  if not pending or pending == '0' then
    redis.call('DEL', key('r', recipient))
    redis.call('ZREM', key('touched'), recipient)
    idle = idle + 1
  end
end
return {gone, sent, idle}
