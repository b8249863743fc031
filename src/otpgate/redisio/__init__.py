"""The Redis plumbing shared by the Redis store, bus and dev inbox: the client opened from
the backend URL (``conn``) and the Lua scripts every atomic step runs as (``lua/``)."""
