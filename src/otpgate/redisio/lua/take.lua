-- What one consumer may handle now on one subscription stream, taken in one step:
-- retries whose backoff ran out go back into the stream; deliveries whose lease ran out
-- (by the domain clock) are claimed, or reported spent when that was their last one;
-- optionally, entries a dead consumer left before their lease was recorded are taken
-- over once Redis has seen them idle for a lease (XAUTOCLAIM); then new entries.
-- ARGV: 1 subscription, 2 group, 3 consumer, 4 now, 5 lease until, 6 how many,
--       7 max deliveries, 8 idle ms for XAUTOCLAIM (0: skip), 9 '1' to read new entries,
--       10 idle ms after which a consumer that holds nothing is forgotten (0: skip)
-- Returns {taken, spent, next retry due ('' none)}; taken and spent hold
-- {id, event, delivery number, times delivered in the group} each; {} when the stream is
-- gone (Redis lost its data: the caller declares its subscription again).
local stream, leases, retries = key('q', ARGV[1]), key('q', ARGV[1], 'lease'),
                                key('q', ARGV[1], 'retry')
if redis.call('EXISTS', stream) == 0 then return {} end
local group, me, now, lease_until = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local budget, max = tonumber(ARGV[6]), tonumber(ARGV[7])
local taken, spent = {}, {}

local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local function times(id)
  local held = redis.call('XPENDING', stream, group, id, id, 1)[1]
  return held and held[4]
end

local due = redis.call('ZRANGEBYSCORE', retries, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 100)
for i = 1, #due, 2 do
  local n, event = string.match(due[i], '^(%d+):[^:]*:(.*)$')
  redis.call('XADD', stream, '*', 'e', event, 'n', n, 't', due[i + 1])
  redis.call('ZREM', retries, due[i])
end

if budget > 0 then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, budget)) do
    local count = times(id)
    local entry = count and redis.call('XRANGE', stream, id, id)[1]
    if not entry then
      redis.call('ZREM', leases, id)
      if count then redis.call('XACK', stream, group, id) end
    else
      local n = tonumber(field(entry[2], 'n'))
      if n + count >= max then
        table.insert(spent, {id, field(entry[2], 'e'), n + count, count})
      elseif budget > 0 then
        redis.call('XCLAIM', stream, group, me, 0, id)
        redis.call('ZADD', leases, lease_until, id)
        table.insert(taken, {id, field(entry[2], 'e'), n + count + 1, count + 1})
        budget = budget - 1
      end
    end
  end
end

if budget > 0 and tonumber(ARGV[8]) > 0 then
  local claimed = redis.call('XAUTOCLAIM', stream, group, me, ARGV[8], '0-0', 'COUNT', budget)
  for _, entry in ipairs(claimed[2]) do
    local id = entry[1]
    local count, n = times(id), tonumber(field(entry[2], 'n'))
    if n + count > max then
      table.insert(spent, {id, field(entry[2], 'e'), n + count - 1, count})
    else
      redis.call('ZADD', leases, lease_until, id)
      table.insert(taken, {id, field(entry[2], 'e'), n + count, count})
      budget = budget - 1
    end
  end
  for _, id in ipairs(claimed[3] or {}) do redis.call('ZREM', leases, id) end
end

if budget > 0 and ARGV[9] == '1' then
  local read = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', budget,
                          'STREAMS', stream, '>')
  if read then
    for _, entry in ipairs(read[1][2]) do
      redis.call('ZADD', leases, lease_until, entry[1])
      table.insert(taken, {entry[1], field(entry[2], 'e'),
                           tonumber(field(entry[2], 'n')) + 1, 1})
    end
  end
end

if tonumber(ARGV[10]) > 0 then
  -- Consumers of processes that died (or stopped) stay in the group: forget the idle ones
  -- holding nothing (what a dead one held was taken over above).
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
    local info = {}
    for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
    if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[10]) and info['name'] ~= me then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, info['name'])
    end
  end
end

local first = redis.call('ZRANGE', retries, 0, 0, 'WITHSCORES')
return {taken, spent, first[2] or ''}
