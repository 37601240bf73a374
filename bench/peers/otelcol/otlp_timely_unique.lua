-- wrk script for the OpenTelemetry Collector's otlp receiver: the same Timely
-- events as bench/timely_unique.lua (one per request, each with a new
-- event_id, over 50 channels), each wrapped as the string body of one OTLP log
-- record in an OTLP/HTTP JSON logs request. The kafka exporter's raw encoding
-- writes that body, the event's own JSON, as the Kafka message.
local counter = 0
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
  local event = string.format(
    '{"event":"message.received","event_id":"%s","timestamp":"2026-04-19T14:30:00Z",' ..
    '"workspace_id":"ws_abc123","data":{"message_id":"msg_%s","conversation_id":"conv_01HX3B2K",' ..
    '"contact_id":"cont_456","channel_id":"chan_%d","channel_type":"whatsapp",' ..
    '"content":"Oi, gostaria de saber sobre os planos","type":"text","direction":"inbound",' ..
    '"media_url":null,"media_mime_type":null,"location":null,"received_at":"2026-04-19T14:30:00Z"}}',
    id, id, counter % 50)
  local body = '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"' ..
    event:gsub('"', '\\"') .. '"}}]}]}]}'
  return wrk.format("POST", "/v1/logs", {["Content-Type"] = "application/json"}, body)
end
