-- wrk script: the lifecycle of an image, POST -> GET -> DELETE, on keep-alive connections.
--
-- usage: wrk -tN -cN -dS -s bench/lifecycle.lua http://127.0.0.1:PORT/ -- BODY_FILE [QUERY]
--
-- wrk keeps one Lua state per thread, and response() carries nothing that names the request
-- it answers; so run one connection per thread (-t equal to -c): then each thread's state
-- machine is one item's lifecycle, strictly in order (201 -> GET that id, 200 -> DELETE it,
-- 204 -> a new POST; anything else counts as an error and starts over with a POST).
-- done() prints one JSON line with the counts summed over threads.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local post_request
local next_request
cycles, posts, gets, deletes, errors, bytes_read = 0, 0, 0, 0, 0, 0
statuses = ""

function init(args)
  local path = args[1]
  local query = args[2] or ""
  local f = assert(io.open(path, "rb"))
  local body = f:read("*all")
  f:close()
  post_request = wrk.format("POST", "/v1/images" .. query,
    {["Content-Type"] = "application/octet-stream"}, body)
  next_request = post_request
end

function request()
  return next_request
end

local current_id

local function failed(status)
  errors = errors + 1
  if #statuses < 120 then
    statuses = statuses .. tostring(status) .. " "
  end
  next_request = post_request
end

function response(status, headers, body)
  if status == 201 then
    current_id = body:match('"id"%s*:%s*"([^"]+)"')
    if current_id == nil then
      return failed(status)
    end
    posts = posts + 1
    next_request = wrk.format("GET", "/v1/images/" .. current_id)
  elseif status == 200 and current_id ~= nil then
    gets = gets + 1
    bytes_read = bytes_read + #body
    next_request = wrk.format("DELETE", "/v1/images/" .. current_id)
  elseif status == 204 then
    deletes = deletes + 1
    cycles = cycles + 1
    current_id = nil
    next_request = post_request
  else
    failed(status)
  end
end

function done(summary, latency, requests)
  local total = {cycles = 0, posts = 0, gets = 0, deletes = 0, errors = 0, bytes_read = 0}
  local seen = ""
  for _, thread in ipairs(threads) do
    for key, _ in pairs(total) do
      total[key] = total[key] + (thread:get(key) or 0)
    end
    seen = seen .. (thread:get("statuses") or "")
  end
  io.write(string.format(
    '{"cycles": %d, "posts": %d, "gets": %d, "deletes": %d, "errors": %d, "bytes_read": %d, ' ..
    '"requests": %d, "duration_us": %d, "socket_errors": %d, "latency_p50_us": %d, ' ..
    '"latency_p99_us": %d, "statuses": "%s"}\n',
    total.cycles, total.posts, total.gets, total.deletes, total.errors, total.bytes_read,
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), seen:sub(1, 200)))
end
