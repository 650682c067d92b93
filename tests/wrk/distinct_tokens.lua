-- Sends each token of a range once, for wrk (`wrk -s tests/wrk/distinct_tokens.lua <url> --
-- <path> <token file> <first> <count>`), then stops. Run it with one wrk thread (`-t 1`).
--
--   path        request path
--   token file  one JWT per line
--   first       0-based line of the first token to send
--   count       how many tokens, from `first` on
--
-- Requests carry "Authorization: Bearer <token>" in file order. Once `count` answers are in, the
-- thread stops; connections that ask for a request after the range is used up start it again, so
-- at most (connections - 1) tokens go twice. done() prints "wrk-result <json>" with every answer
-- that was not 2xx counted, as bench/wrk/requests.lua does.

local requests = {}
local next_request = 0
local answered = 0
local wanted = 0
non2xx = 0

function init(args)
  local path = args[1]
  local file = args[2]
  local first = tonumber(args[3])
  wanted = tonumber(args[4])
  local line_number = 0
  for line in io.lines(file) do
    if line ~= "" then
      if line_number >= first then
        requests[#requests + 1] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. line })
        if #requests >= wanted then
          break
        end
      end
      line_number = line_number + 1
    end
  end
  if #requests < wanted then
    error(string.format("%s holds %d tokens from line %d, %d wanted", file, #requests, first, wanted))
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
  answered = answered + 1
  if answered >= wanted then
    wrk.thread:stop()
  end
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local counted = 0
  for _, thread in ipairs(threads) do
    counted = counted + (thread:get("non2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'wrk-result {"requests": %d, "duration_us": %d, "non2xx": %d, "status_errors": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, counted, e.status,
    e.connect, e.read, e.write, e.timeout))
end
