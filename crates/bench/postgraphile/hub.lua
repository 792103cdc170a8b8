local dir = os.getenv("PGL_DIR")
local run = os.getenv("PGL_RUN")
QUERY_FILE = run .. "/hub.graphql"; VAR = "cities"; AS_LIST = true
SLUGS_FILE = run .. "/slugs.txt"
dofile(dir .. "/listing.lua")
