-- A recipient's state and the live answer kept under an idempotency slot.
-- KEYS: 1 state, 2 answer; ARGV: 1 now. Returns {version, state, answer}.
local state = redis.call('HMGET', KEYS[1], 'v', 'b')
return {state[1] or '0', state[2] or false, live_answer(KEYS[2], ARGV[1])}
