-- Settle deliveries of one subscription stream, each only while it is still the
-- delivery the caller had (the same number of deliveries; held by the caller, except a
-- spent one, whose holder died): acknowledge (and delete: a stream holds only what is
-- not yet acknowledged), retry later, dead-letter, or hand back at once.
-- KEYS: 1 stream, 2 leases, 3 retries, 4 dead letters
-- ARGV: 1 group, 2 consumer, 3 now, then 6 values per delivery: action (a ack, r retry,
--       d dead letter, b bury a spent one, h hand back), id, times delivered, and
--       for r: due at, member; for d and b: event, error, deliveries
-- Returns how many were settled.
local stream, leases, retries, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, me, now = ARGV[1], ARGV[2], ARGV[3]
local done = 0
for i = 4, #ARGV, 6 do
  local action, id, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local held = redis.call('XPENDING', stream, group, id, id, 1)[1]
  local ok = held ~= nil and held[4] == count
  if ok and action == 'b' then
    local lease = redis.call('ZSCORE', leases, id)
    ok = (not lease) or tonumber(lease) <= tonumber(now)
  elseif ok then
    ok = held[2] == me
  end
  if ok then
    if action == 'h' then
      redis.call('ZADD', leases, now, id)
    else
      if action == 'r' then
        redis.call('ZADD', retries, ARGV[i + 3], ARGV[i + 4])
      elseif action == 'd' or action == 'b' then
        redis.call('XADD', dead, '*', 'e', ARGV[i + 3], 'err', ARGV[i + 4],
                   'n', ARGV[i + 5], 'at', now)
      end
      redis.call('XACK', stream, group, id)
      redis.call('XDEL', stream, id)
      redis.call('ZREM', leases, id)
    end
    done = done + 1
  end
end
return done
