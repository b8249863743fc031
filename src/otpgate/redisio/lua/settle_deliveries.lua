-- Settle deliveries of one subscription stream, each only while it is still the
-- delivery the caller had (the same number of deliveries; held by the caller, except a
-- spent one, whose holder died): acknowledge (and delete: a stream holds only what is
-- not yet acknowledged), retry later, dead-letter, or hand back at once.
-- ARGV[1]: msgpack {subscription, group, consumer, now, deliveries}; a delivery is
--   {action (a ack, r retry, d dead letter, b bury a spent one, h hand back), entry id,
--   times delivered, and for r: due at, member; for d and b: event, error, deliveries}
-- Returns how many were settled.
local p = cmsgpack.unpack(ARGV[1])
local stream, leases, retries, dead = key('q', p[1]), key('q', p[1], 'lease'),
                                      key('q', p[1], 'retry'), key('q', p[1], 'dead')
local group, me, now = p[2], p[3], p[4]
local done = 0
for _, d in ipairs(p[5]) do
  local action, id, count = d[1], d[2], d[3]
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
        redis.call('ZADD', retries, d[4], d[5])
      elseif action == 'd' or action == 'b' then
        redis.call('XADD', dead, '*', 'e', d[4], 'err', d[5], 'n', d[6], 'at', now)
      end
      redis.call('XACK', stream, group, id)
      redis.call('XDEL', stream, id)
      redis.call('ZREM', leases, id)
    end
    done = done + 1
  end
end
return done
