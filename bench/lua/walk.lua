-- One request per credential, walking through a list of them, and every response judged.
--
-- The plan (a Lua file written by bench/load.py, passed after "--") says what to send and what
-- a right answer looks like. Read rows cycle through their sample; single-use rows (refresh
-- tokens, authorization codes) never reuse a value: when the list runs out the thread stops
-- and the run is reported as exhausted, never silently replayed.

local plan
local values = {}
local position = 0
local threads = {}

-- Per-thread tallies, read back by done() through thread:get().
bad = 0
exhausted = 0
first_bad = ""

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  plan = dofile(args[1])
  if plan.values then
    for line in io.lines(plan.values) do
      values[#values + 1] = line
    end
  end
  if #values == 0 then
    values[1] = ""
  end
end

local function fill(template, value)
  if template == nil then
    return nil
  end
  local start, stop = template:find("{value}", 1, true)
  if start == nil then
    return template
  end
  return template:sub(1, start - 1) .. value .. template:sub(stop + 1)
end

function request()
  position = position + 1
  if position > #values then
    if plan.cycle then
      position = 1
    else
      exhausted = 1
      wrk.thread:stop()
      return wrk.format("GET", "/pool-exhausted")
    end
  end
  local value = values[position]
  local headers = {}
  for name, template in pairs(plan.headers) do
    headers[name] = fill(template, value)
  end
  return wrk.format(plan.method, plan.path, headers, fill(plan.body, value))
end

function response(status, headers, body)
  local right = status == plan.status
  if right then
    for _, needle in ipairs(plan.expect) do
      if not body:find(needle) then
        right = false
        break
      end
    end
  end
  if not right then
    bad = bad + 1
    if first_bad == "" then
      first_bad = status .. " " .. body:sub(1, 300):gsub("%s+", " ")
    end
  end
end

function done(summary, latency, requests)
  local wrong, ran_out, sample = 0, 0, ""
  for _, thread in ipairs(threads) do
    wrong = wrong + thread:get("bad")
    ran_out = math.max(ran_out, thread:get("exhausted"))
    if sample == "" then
      sample = thread:get("first_bad")
    end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d connect=%d read=%d " ..
    "write=%d status=%d timeout=%d bad=%d exhausted=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout, wrong, ran_out))
  if sample ~= "" then
    io.write("BENCH-FIRST-BAD " .. sample .. "\n")
  end
end
