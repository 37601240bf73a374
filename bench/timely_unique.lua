-- wrk script: POSTs Timely message.received events, each with a new event_id,
-- spread over 50 channels, so every request is a new event (no dedup shortcut).
counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + tid)
end

-- The body of one event: shared with bench/peers/otelcol/otlp_timely_unique.lua.
function timely_event(id, channel)
  return string.format(
    '{"event":"message.received","event_id":"%s","timestamp":"2026-04-19T14:30:00Z",' ..
    '"workspace_id":"ws_abc123","data":{"message_id":"msg_%s","conversation_id":"conv_01HX3B2K",' ..
    '"contact_id":"cont_456","channel_id":"chan_%d","channel_type":"whatsapp",' ..
    '"content":"Oi, gostaria de saber sobre os planos","type":"text","direction":"inbound",' ..
    '"media_url":null,"media_mime_type":null,"location":null,"received_at":"2026-04-19T14:30:00Z"}}',
    id, id, channel)
end

function next_id()
  counter = counter + 1
  return string.format("evt_%d_%d_%d", tid, counter, math.random(1, 1e9)), counter % 50
end

request = function()
  local id, channel = next_id()
  return wrk.format("POST", "/v1/webhooks/timely", {["Content-Type"] = "application/json"},
    timely_event(id, channel))
end
