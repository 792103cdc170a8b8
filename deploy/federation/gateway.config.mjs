// Hive Gateway's configuration for the example (read by `hive-gateway` from
// the working directory, or given with `-c`). The supergraph is the file
// `compose.mjs` writes; a path given on the command line takes its place.
//
// The gateway forwards nothing from the client by default. The hub decides
// what a request may see from its bearer token (a city's token reads its
// own drafts), and names every log line and error by `x-request-id`, so
// both are passed on to the hub, and to no other subgraph.

import { defineConfig } from "@graphql-hive/gateway";

// The subgraph name the hub is composed under (`compose.mjs hub=URL`).
const HUB = "hub";
const FORWARDED_TO_HUB = ["authorization", "x-request-id"];

export const gatewayConfig = defineConfig({
  supergraph: "./supergraph.graphql",
  propagateHeaders: {
    fromClientToSubgraphs({ request, subgraphName }) {
      if (subgraphName !== HUB) return {};
      return Object.fromEntries(
        FORWARDED_TO_HUB.map((name) => [name, request.headers.get(name)]),
      );
    },
  },
});
