-- A recipient's state and the live answer kept under an idempotency slot.
-- ARGV: 1 recipient, 2 slot, 3 now. Returns {version, state, answer}.
local state = redis.call('HMGET', key('r', ARGV[1]), 'v', 'b')
return {state[1] or '0', state[2] or false, live_answer(ARGV[2], ARGV[3])}
