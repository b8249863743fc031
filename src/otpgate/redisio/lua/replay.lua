-- Put dead letter ARGV[2] of subscription ARGV[1] back on its stream as a new delivery
-- (earlier deliveries 0, due at ARGV[3]); 1 if it was there, else 0.
local name, id, now = ARGV[1], ARGV[2], ARGV[3]
local dead = key('q', name, 'dead')
local found = redis.call('XRANGE', dead, id, id)
if #found == 0 then return 0 end
local fields = found[1][2]
local event = false
for i = 1, #fields, 2 do
  if fields[i] == 'e' then event = fields[i + 1] end
end
if not event then return 0 end
redis.call('XADD', key('q', name), '*', 'e', event, 'n', '0', 't', now)
redis.call('XDEL', dead, id)
return 1
