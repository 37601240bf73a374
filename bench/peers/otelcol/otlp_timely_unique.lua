-- wrk script for the OpenTelemetry Collector's otlp receiver: the same Timely
-- events as bench/timely_unique.lua (one per request, each with a new
-- event_id, over 50 channels), each wrapped as the string body of one OTLP log
-- record in an OTLP/HTTP JSON logs request. The kafka exporter's raw encoding
-- writes that body, the event's own JSON, as the Kafka message.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "../../timely_unique.lua") -- setup, init, timely_event, next_id

request = function()
  local id, channel = next_id()
  local body = '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"' ..
    timely_event(id, channel):gsub('"', '\\"') .. '"}}]}]}]}'
  return wrk.format("POST", "/v1/logs", {["Content-Type"] = "application/json"}, body)
end
