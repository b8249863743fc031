-- Shared by otpgate's scripts (prepended to each): reading an OTP, checking that the
-- caller's copy of the declared subscriptions is current, and publishing events.

-- The OTP at record key `key`: {record} for a finished one, {"~<recipient>", version,
-- state} for a pending one (its record is its recipient's state), {} when there is none.
local function otp_of(key, state_prefix)
  local record = redis.call('GET', key)
  if not record then return {} end
  if string.sub(record, 1, 1) == '~' then
    local state = redis.call('HMGET', state_prefix .. string.sub(record, 2), 'v', 'b')
    return {record, state[1] or '0', state[2] or false}
  end
  return {record}
end

-- Whether the caller routed its events with the current subscriptions.
local function fresh(subs_key, expected)
  return (redis.call('HGET', subs_key, '~v') or '0') == expected
end

-- Publish the events block of ARGV at `i`: a count, then per event its JSON, how many
-- streams take it and their indexes in KEYS. Each entry: e (event), n (earlier
-- deliveries), t (since when it is due, the domain clock's seconds).
local function emit(i, now)
  local count = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, count do
    local event, streams = ARGV[i], tonumber(ARGV[i + 1])
    i = i + 2
    for _ = 1, streams do
      redis.call('XADD', KEYS[tonumber(ARGV[i])], '*', 'e', event, 'n', '0', 't', now)
      i = i + 1
    end
  end
  return i
end

-- A kept idempotent answer at `key` that is still live at `now`, or false.
local function live_answer(key, now)
  local kept = redis.call('HMGET', key, 'x', 'a')
  if kept[1] and tonumber(kept[1]) > tonumber(now) then return kept[2] end
  return false
end
