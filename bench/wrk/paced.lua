-- requests.lua at a fixed pace: each connection waits about <pause> ms after an answer before its
-- next request, so the load is about connections / (pause + latency) requests per second whatever
-- the server's speed, and the latencies are those of a server that is not saturated.
--
-- Arguments: requests.lua's first six (use "" for the status to accept any 2xx), then <pause>
-- in ms; requests.lua's seventh, a body file, is not used here.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "requests.lua")

local base_init = init
local pause_ms = 0

function init(args)
  pause_ms = tonumber(args[7] or "0") or 0
  base_init({ args[1], args[2], args[3], args[4], args[5], args[6] })
end

-- The pause varies by a millisecond either way (wrk's timers count whole milliseconds), so that
-- connections drift apart instead of sending in bursts on the same timer tick.
function delay()
  if pause_ms < 2 then
    return pause_ms
  end
  return math.random(pause_ms - 1, pause_ms + 1)
end
