-- wrk script: POSTs Timely message.received events, each with a new event_id,
-- spread over 50 channels, so every request is a new event (no dedup shortcut).
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + tid)
end

request = function()
  counter = counter + 1
  local id = string.format("evt_%d_%d_%d", tid, counter, math.random(1, 1e9))
  local body = string.format(
    '{"event":"message.received","event_id":"%s","timestamp":"2026-04-19T14:30:00Z",' ..
    '"workspace_id":"ws_abc123","data":{"message_id":"msg_%s","conversation_id":"conv_01HX3B2K",' ..
    '"contact_id":"cont_456","channel_id":"chan_%d","channel_type":"whatsapp",' ..
    '"content":"Oi, gostaria de saber sobre os planos","type":"text","direction":"inbound",' ..
    '"media_url":null,"media_mime_type":null,"location":null,"received_at":"2026-04-19T14:30:00Z"}}',
    id, id, counter % 50)
  return wrk.format("POST", "/v1/webhooks/timely", {["Content-Type"] = "application/json"}, body)
end
