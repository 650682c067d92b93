-- Requests for one benchmark row, for wrk (`wrk -s bench/wrk/requests.lua <url> -- <args>`).
--
-- Arguments: <path> [<token file> [<limit> [<first> [once [<status>]]]]]
--   path        request path, e.g. "/" or "/public"
--   token file  one JWT per line; each request carries the next one as "Authorization: Bearer",
--               cycling through the file, so with N tokens a token comes back every N requests;
--               a file whose first line is "dpop-token <token>" holds DPoP proofs on the lines
--               after it instead, each sent with "Authorization: DPoP <token>" (and <limit> and
--               <first> count proofs); "-" or absent sends no token
--   limit       use only <limit> tokens (1 gives a single hot token); 0 or absent: all
--   first       0-based line of the first token used; absent: 0
--   once        stop the thread once <limit> answers are in, so each token goes about once (run
--               with one thread; connections asking after the range is used up start it again,
--               so at most connections - 1 tokens go twice); a number stops it after that many
--               answers instead (<limit> minus the connections: no token goes twice); "-" to run
--               for wrk's whole -d
--   status      the status every answer must have, e.g. 401; absent or "": any 2xx
--   body file   a JSON body sent with POST (and content-type application/json) on every request
--
-- Every response whose status is not 2xx is counted (a `response` hook, so 3xx counts too, unlike
-- wrk's own "Non-2xx or 3xx" line, which counts only status >= 400), and so is every response
-- whose status is not the expected one. done() prints one line, "wrk-result <json>", that
-- bench/run.py reads.

local requests = {}
-- DPoP: the one token, and the proofs, formatted into a request each as it is sent.
local dpop_token = nil
local proofs = {}
local request_path = "/"
local next_request = 0
local answered = 0
local stop_after = 0
local expected_status = nil
non2xx = 0
unexpected = 0

function init(args)
  local path = args[1] or "/"
  local file = args[2]
  local limit = tonumber(args[3] or "0") or 0
  local first = tonumber(args[4] or "0") or 0
  if args[5] == "once" then
    stop_after = limit
  elseif tonumber(args[5] or "") then
    stop_after = tonumber(args[5])
  end
  request_path = path
  expected_status = tonumber(args[6] or "")
  local method, body, base_headers = "GET", nil, {}
  if args[7] ~= nil and args[7] ~= "" then
    local handle = assert(io.open(args[7], "rb"))
    body = handle:read("*a")
    handle:close()
    method = "POST"
    base_headers["Content-Type"] = "application/json"
  end
  local function headers_with(extra)
    local all = {}
    for name, value in pairs(base_headers) do all[name] = value end
    for name, value in pairs(extra) do all[name] = value end
    return all
  end
  if file ~= nil and file ~= "" and file ~= "-" then
    local line_number = 0
    for line in io.lines(file) do
      if dpop_token == nil and line_number == 0 and #proofs == 0 and #requests == 0 then
        dpop_token = line:match("^dpop%-token (.+)$")
        if dpop_token then
          goto continue
        end
        dpop_token = false
      end
      if line ~= "" and dpop_token then
        if line_number >= first then
          proofs[#proofs + 1] = line
          if limit > 0 and #proofs >= limit then
            break
          end
        end
        line_number = line_number + 1
      elseif line ~= "" then
        if line_number >= first then
          requests[#requests + 1] = wrk.format(method, path,
            headers_with({ ["Authorization"] = "Bearer " .. line }), body)
          if limit > 0 and #requests >= limit then
            break
          end
        end
        line_number = line_number + 1
      end
      ::continue::
    end
    local loaded = dpop_token and #proofs or #requests
    if loaded == 0 or loaded < limit then
      error(string.format("%s holds %d tokens from line %d, %d wanted", file, loaded, first, limit))
    end
  else
    requests[1] = wrk.format(method, path, headers_with({}), body)
  end
end

function request()
  if dpop_token then
    next_request = next_request % #proofs + 1
    return wrk.format("GET", request_path,
      { ["Authorization"] = "DPoP " .. dpop_token, ["DPoP"] = proofs[next_request] })
  end
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function response(status, headers, body)
  local is_2xx = status >= 200 and status <= 299
  if not is_2xx then
    non2xx = non2xx + 1
  end
  if (expected_status == nil and not is_2xx) or (expected_status ~= nil and status ~= expected_status) then
    unexpected = unexpected + 1
  end
  answered = answered + 1
  if stop_after > 0 and answered >= stop_after then
    wrk.thread:stop()
  end
end

-- setup() and done() run in wrk's main Lua state; threads are kept to read their counters.
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local counted, mismatched = 0, 0
  for _, thread in ipairs(threads) do
    counted = counted + (thread:get("non2xx") or 0)
    mismatched = mismatched + (thread:get("unexpected") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'wrk-result {"requests": %d, "duration_us": %d, "non2xx": %d, "unexpected": %d, ' ..
    '"status_errors": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f}\n',
    summary.requests, summary.duration, counted, mismatched, e.status,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
