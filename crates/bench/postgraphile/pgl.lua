local dir = os.getenv("PGL_DIR")
local run = os.getenv("PGL_RUN")
QUERY_FILE = run .. "/pgl.graphql"; VAR = "slug"; AS_LIST = false
SLUGS_FILE = run .. "/slugs.txt"
dofile(dir .. "/listing.lua")
