-- A decision's change, written only over the state version it was decided on.
-- ARGV[1]: msgpack {expected version ('0': absent), new state ('' unchanged), pending
--   codes, now, recipient, subs version ('' no events), slot ('' none), answer, answer live until,
--   answer TTL ms (clean-up only), records, events}; a record is {OTP id, value, due
--   member, expires at, pending?}
-- Returns {1} done, {0, version, state, answer} on a conflict, {2, answer} when an
-- answer is kept already, {-1} when the subscriptions changed.
local p = cmsgpack.unpack(ARGV[1])
local expected, state, pending, now, recipient, subs = p[1], p[2], p[3], p[4], p[5], p[6]
local slot, answer, live_until, ttl, records, events = p[7], p[8], p[9], p[10], p[11], p[12]
local at = key('r', recipient)
local version = redis.call('HGET', at, 'v') or '0'
if version ~= expected then
  local kept = false
  if slot ~= '' then kept = live_answer(slot, now) end
  return {0, version, redis.call('HGET', at, 'b') or false, kept}
end
if slot ~= '' then
  local kept = live_answer(slot, now)
  if kept then return {2, kept} end
end
if subs ~= '' and not fresh(subs) then return {-1} end
if state ~= '' then
  redis.call('HINCRBY', at, 'v', 1)
  redis.call('HSET', at, 'b', state, 'p', pending)
  redis.call('ZADD', key('touched'), now, recipient)
end
for _, r in ipairs(records) do
  redis.call('SET', key('o', r[1]), r[2])
  if r[5] then
    redis.call('ZADD', key('due'), r[4], r[3])
    redis.call('ZREM', key('done'), r[1])
  else
    redis.call('ZREM', key('due'), r[3])
    redis.call('ZADD', key('done'), r[4], r[1])
  end
end
emit(events, now)
if slot ~= '' then
  redis.call('HSET', key('i', slot), 'x', live_until, 'a', answer)
  redis.call('PEXPIRE', key('i', slot), ttl)
end
return {1}
