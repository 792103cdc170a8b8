-- wrk script shared by hub.lua and pgl.lua: POSTs the listing for each city
-- slug of a fixed list in turn (threads start at different places).
-- Before dofile: QUERY_FILE (GraphQL document), VAR ("cities" or "slug"),
-- SLUGS_FILE (one slug a line), AS_LIST (wrap the slug in a list).
local function read_all(path)
  local f = assert(io.open(path, "r")); local s = f:read("*a"); f:close(); return s
end
local function json_string(s)
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub('\n', ' ') .. '"'
end

local query = read_all(QUERY_FILE):gsub("%s+$", "")
local slugs = {}
for line in io.lines(SLUGS_FILE) do
  if line ~= "" then slugs[#slugs + 1] = line end
end
assert(#slugs > 0, "no slugs in " .. SLUGS_FILE)

local requests = {}
local function build()
  local host = wrk.headers["Host"] or (wrk.host .. ":" .. tostring(wrk.port))
  local headers = { ["Host"] = host, ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
  for i, s in ipairs(slugs) do
    local v = json_string(s)
    if AS_LIST then v = "[" .. v .. "]" end
    local body = '{"query":' .. json_string(query) .. ',"variables":{"' .. VAR .. '":' .. v .. '}}'
    requests[i] = wrk.format("POST", "/graphql", headers, body)
  end
end

local counter = 0
function setup(thread)
  thread:set("start", counter * 17)
  counter = counter + 1
end

local i = nil
function init(args)
  build()
end

function request()
  if #requests == 0 then build() end
  if i == nil then i = (start or 0) % #requests end
  i = i % #requests + 1
  return requests[i]
end
