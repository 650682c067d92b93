-- requests.lua at a fixed pace: each connection waits <pause> ms after an answer before its next
-- request, so the load is about connections / (pause + latency) requests per second whatever the
-- server's speed, and the latencies are those of a server that is not saturated.
--
-- Arguments: requests.lua's six (use "" for the status to accept any 2xx), then <pause> in ms.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "requests.lua")

local base_init = init
local pause_ms = 0

function init(args)
  base_init(args)
  pause_ms = tonumber(args[7] or "0") or 0
end

function delay()
  return pause_ms
end
