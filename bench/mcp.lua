-- wrk script for bench/load.py: MCP tools/call over Streamable HTTP.
--
--   wrk -t4 -c32 -d20s --latency -s bench/mcp.lua http://host:port/path -- TOOL [BEARER_TOKEN]
--
-- Each wrk thread is one MCP session. Its init() opens the session before wrk starts its clock:
-- POST initialize, capture the Mcp-Session-Id response header and the negotiated revision,
-- POST notifications/initialized. It does that with curl, because wrk opens all of a thread's
-- connections at once: a request sent before the session exists would be junk in wrk's own
-- latency and request counts. Then every connection of the thread loops POST tools/call TOOL
-- with that session, a fresh JSON-RPC id per request (ids are unique within a session).
-- response() counts answers that are not HTTP 200 and bodies that carry a JSON-RPC "error"
-- (or no "result", or an isError tool result); done() prints one MCPBENCH line for load.py.

local tool, token
local next_id = 0
calls, rpc_errors, non2xx = 0, 0, 0 -- globals: done() reads them per thread

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

local function quote(text)
    return "'" .. string.gsub(text, "'", "'\\''") .. "'"
end

local function post(url, headers, body)
    local command = { "curl", "-sS", "-i", "--max-time", "180", "-X", "POST" }
    for name, value in pairs(headers) do
        table.insert(command, "-H")
        table.insert(command, quote(name .. ": " .. value))
    end
    table.insert(command, "--data-binary")
    table.insert(command, quote(body))
    table.insert(command, quote(url))
    local pipe = assert(io.popen(table.concat(command, " ") .. " 2>&1"))
    local reply = pipe:read("*a")
    pipe:close()
    local status = tonumber(string.match(reply, "^HTTP/[%d.]+ (%d+)"))
    local found = {}
    local head, rest = string.match(reply, "^(.-)\r?\n\r?\n(.*)$")
    for line in string.gmatch(head or "", "[^\r\n]+") do
        local name, value = string.match(line, "^([^:]+):%s*(.-)%s*$")
        if name then
            found[string.lower(name)] = value
        end
    end
    return status, found, rest or reply
end

function init(args)
    tool = args[1] or "echo"
    token = args[2]
    local url = wrk.scheme .. "://" .. wrk.host .. ":" .. wrk.port .. wrk.path
    local headers = {
        ["Content-Type"] = "application/json",
        ["Accept"] = "application/json, text/event-stream",
    }
    if token and token ~= "" then
        headers["Authorization"] = "Bearer " .. token
    end
    local status, found, body = post(url, headers, '{"jsonrpc":"2.0","id":0,"method":"initialize",'
        .. '"params":{"protocolVersion":"2025-11-25","capabilities":{},'
        .. '"clientInfo":{"name":"wrk","version":"1"}}}')
    local session = found["mcp-session-id"]
    if status ~= 200 or not session then
        io.stderr:write("MCPBENCH initialize failed: ", tostring(status), " ", body, "\n")
        os.exit(2)
    end
    headers["Mcp-Session-Id"] = session
    headers["MCP-Protocol-Version"] = string.match(body, '"protocolVersion"%s*:%s*"([^"]+)"')
        or "2025-11-25"
    status = post(url, headers, '{"jsonrpc":"2.0","method":"notifications/initialized"}')
    if status ~= 202 and status ~= 200 then
        io.stderr:write("MCPBENCH notifications/initialized failed: ", tostring(status), "\n")
        os.exit(2)
    end
    for name, value in pairs(headers) do
        wrk.headers[name] = value
    end
    wrk.method = "POST"
end

function request()
    next_id = next_id + 1
    return wrk.format(nil, nil, nil, '{"jsonrpc":"2.0","id":' .. next_id
        .. ',"method":"tools/call","params":{"name":"' .. tool
        .. '","arguments":{"message":"m' .. next_id .. '"}}}')
end

function response(status, headers, body)
    if status ~= 200 then
        non2xx = non2xx + 1
    elseif string.find(body, '"error"', 1, true) or not string.find(body, '"result"', 1, true)
        or string.find(body, '"isError"%s*:%s*true') then
        rpc_errors = rpc_errors + 1
    else
        calls = calls + 1
    end
end

function done(summary, latency, requests)
    local total = { calls = 0, rpc_errors = 0, non2xx = 0 }
    for _, thread in ipairs(threads) do
        for name in pairs(total) do
            total[name] = total[name] + thread:get(name)
        end
    end
    local e = summary.errors
    io.write(string.format(
        "MCPBENCH requests=%d duration_us=%d calls=%d rpc_errors=%d non2xx=%d connect=%d "
            .. "read=%d write=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
        summary.requests, summary.duration, total.calls, total.rpc_errors, total.non2xx,
        e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max))
end
