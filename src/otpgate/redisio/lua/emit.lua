-- Events published outside a store change. ARGV[1]: msgpack {subs version, now, events}.
local p = cmsgpack.unpack(ARGV[1])
if not fresh(p[1]) then return -1 end
emit(p[3], p[2])
return 1
