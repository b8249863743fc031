-- A driver's pace shared by every process: the token bucket of
-- otpgate/ratelimit/bucket.py (GCRA: the time at which the bucket would be empty again),
-- on Redis's own clock so that processes on machines whose clocks differ share one pace.
-- KEYS[1]: the pace's hash tag. ARGV: 1 rate (per second), 2 burst, 3 within (seconds:
-- take the slot only if it comes sooner). Returns {wait, '1' taken | '0'} as strings.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, within = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local k = key('pace')
local due = tonumber(redis.call('GET', k) or '0')
if due < now then due = now end
local wait = due - (burst - 1) / rate - now
if wait < 0 then wait = 0 end
if wait >= within then return {string.format('%.6f', wait), '0'} end
local next_due = due + 1 / rate
redis.call('SET', k, string.format('%.6f', next_due), 'PX',
           math.ceil((next_due - now) * 1000) + 1000)
return {string.format('%.6f', wait), '1'}
