-- Events published outside a store change.
-- KEYS: 1 subs, 2.. streams; ARGV: 1 subs version, 2 now, 3.. events
if not fresh(KEYS[1], ARGV[1]) then return -1 end
emit(3, ARGV[2])
return 1
