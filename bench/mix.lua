-- mix.lua -- wrk script for `make bench`: the realistic mix.
--   half the requests: one Timely event (message.received or channel.*)
--   half the requests: one Whapi messages.post batch of 1 to 20 messages
--   5% of all requests: an exact repeat of a body sent before (a provider retry)
-- Events spread over 200 channels. Each new event's time is the moment it is
-- sent (ms), so the end-to-end consumer can measure accepted -> visible.
-- Environment: BENCH_DELAY_MS  mean per-connection pause between requests (0: saturate)
--              BENCH_PATH_PREFIX (default /v1/webhooks/) for the ceiling server
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } rl_timespec;
int clock_gettime(int clk, rl_timespec *ts);
]]
local ts = ffi.new("rl_timespec")
local function now_ms()
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.tv_sec) * 1000 + math.floor(tonumber(ts.tv_nsec) / 1e6)
end

local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local prefix = os.getenv("BENCH_PATH_PREFIX") or "/v1/webhooks/"
local headers = {["Content-Type"] = "application/json"}
-- Globals (not locals): done() reads them from each thread with thread:get().
sent, n, events, retries, retry_events = {}, 0, 0, 0, 0

function init(args)
  math.randomseed(tid * 7919 + os.time())
end

local function iso(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03dZ", ms % 1000)
end

local function timely(ms)
  n = n + 1
  local id = string.format("evt_b%d_%d_%d", tid, n, math.random(1, 1e9))
  local ch = "chan_" .. math.random(0, 199)
  if math.random() < 0.2 then
    return "timely", string.format(
      '{"event":"channel.error","event_id":"%s","timestamp":"%s","workspace_id":"ws_bench",' ..
      '"data":{"channel_id":"%s","channel_type":"whatsapp","channel_name":"Suporte",' ..
      '"provider":"waba","status":"degraded","error_code":"131056","error_message":' ..
      '"Too many messages sent from this phone number in a short time","error_category":' ..
      '"rate_limit","affected_message_ids":["msg_1","msg_2"],"occurred_at":"%s"}}',
      id, iso(ms), ch, iso(ms)), 1
  end
  return "timely", string.format(
    '{"event":"message.received","event_id":"%s","timestamp":"%s","workspace_id":"ws_bench",' ..
    '"data":{"message_id":"msg_%s","conversation_id":"conv_%d","contact_id":"cont_%d",' ..
    '"channel_id":"%s","channel_type":"whatsapp","content":"Oi, gostaria de saber sobre ' ..
    'os planos","type":"text","direction":"inbound","media_url":null,"media_mime_type":null,' ..
    '"location":null,"received_at":"%s"}}',
    id, iso(ms), id, math.random(1, 1e6), math.random(1, 1e6), ch, iso(ms)), 1
end

local function whapi(ms)
  local k = math.random(1, 20)
  local ch = "WHAPI-" .. math.random(0, 199)
  local items = {}
  for i = 1, k do
    n = n + 1
    local from_me = math.random() < 0.3
    items[i] = string.format(
      '{"id":"wa_b%d_%d_%d","from_me":%s,"type":"text","chat_id":"5547%08d@s.whatsapp.net",' ..
      '"timestamp":%d,"source":"mobile","text":{"body":"Hello, message %d"},' ..
      '"from":"5547%08d","from_name":"Bench"}',
      tid, n, math.random(1, 1e9), from_me and "true" or "false", math.random(0, 1e7), ms, n,
      math.random(0, 1e7))
  end
  return "whapi", '{"messages":[' .. table.concat(items, ",") ..
    '],"event":{"type":"messages","event":"post"},"channel_id":"' .. ch .. '"}', k
end

request = function()
  local source, body, k
  if #sent > 0 and math.random() < 0.05 then
    local old = sent[math.random(1, #sent)]
    source, body, k = old[1], old[2], old[3]
    retries = retries + 1
    retry_events = retry_events + k
  else
    local ms = now_ms()
    if math.random() < 0.5 then source, body, k = timely(ms) else source, body, k = whapi(ms) end
    if #sent < 2000 then table.insert(sent, {source, body, k})
    else sent[math.random(1, #sent)] = {source, body, k} end
  end
  events = events + k
  return wrk.format("POST", prefix .. source, headers, body)
end

-- Exponentially distributed pauses around the mean: each connection is then a
-- random (Poisson-like) source, as providers are. A constant pause keeps the
-- connections in step (they start together), and the rate arrives as bursts of
-- CONNS requests at once, whose last one waits for all the others.
function delay()
  if delay_ms <= 0 then return 0 end
  return math.floor(-delay_ms * math.log(1 - math.random()) + 0.5)
end

function done(summary, latency, requests)
  local ev, rt, rte = 0, 0, 0
  for _, t in ipairs(threads) do
    ev = ev + t:get("events")
    rt = rt + t:get("retries")
    rte = rte + t:get("retry_events")
  end
  local secs = summary.duration / 1e6
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read +
              summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.1f events_sent=%d eps=%.1f retries=%d " ..
    "retry_events=%d errors=%d p50_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    summary.requests, secs, summary.requests / secs, ev, ev / secs, rt, rte, bad,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
