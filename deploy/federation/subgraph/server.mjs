// The sample city subgraph: accessibility information for the hub's
// activities, keyed by the hub's activity `id`. A Federation 2 subgraph
// built with @apollo/subgraph's buildSubgraphSchema (MIT) and served by
// GraphQL Yoga on POST /graphql; the gateway composes it beside the hub.
//
//   node subgraph/server.mjs
//
// Environment: HOST (default 127.0.0.1), PORT (default 4001; 0 picks a free
// port), ACCESSIBILITY_DATA (a JSON file mapping the hub's activity ids to
// their accessibility; default subgraph/accessibility.json). Its first line
// on standard output is the URL it serves, once it is listening.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { buildSubgraphSchema } from "@apollo/subgraph";
import { parse } from "graphql";
import { createYoga } from "graphql-yoga";

const host = process.env.HOST ?? "127.0.0.1";
const port = Number(process.env.PORT ?? 4001);
const dataFile =
  process.env.ACCESSIBILITY_DATA ??
  new URL("./accessibility.json", import.meta.url).pathname;

// Reads the data file and checks every entry, so a typo fails at start with
// the activity and field it concerns, not later as a null in an answer.
function loadAccessibility(path) {
  const entries = JSON.parse(readFileSync(path, "utf8"));
  const byId = new Map();
  for (const [id, entry] of Object.entries(entries)) {
    const where = `${path}: activity ${JSON.stringify(id)}`;
    for (const flag of ["stepFreeAccess", "liveCaptions", "hearingLoop"]) {
      if (typeof entry[flag] !== "boolean") {
        throw new Error(`${where}: ${flag} must be true or false`);
      }
    }
    const signLanguages = entry.signLanguages ?? [];
    if (!Array.isArray(signLanguages) || signLanguages.some((s) => typeof s !== "string")) {
      throw new Error(`${where}: signLanguages must be a list of names`);
    }
    for (const text of ["notes", "contact"]) {
      if (entry[text] != null && typeof entry[text] !== "string") {
        throw new Error(`${where}: ${text} must be text`);
      }
    }
    byId.set(id, {
      stepFreeAccess: entry.stepFreeAccess,
      signLanguages,
      liveCaptions: entry.liveCaptions,
      hearingLoop: entry.hearingLoop,
      notes: entry.notes ?? null,
      contact: entry.contact ?? null,
    });
  }
  return byId;
}

const accessibility = loadAccessibility(dataFile);
const typeDefs = parse(
  readFileSync(new URL("./accessibility.graphql", import.meta.url), "utf8"),
);

const resolvers = {
  Query: {
    accessibleActivities: (_, { stepFreeAccess }) =>
      [...accessibility.entries()]
        .filter(([, a]) => stepFreeAccess == null || a.stepFreeAccess === stepFreeAccess)
        .map(([id]) => ({ id })),
  },
  Activity: {
    // The gateway hands over `{ __typename: "Activity", id }`: the key is
    // all this subgraph needs.
    __resolveReference: ({ id }) => ({ id }),
    accessibility: ({ id }) => accessibility.get(id) ?? null,
  },
};

const yoga = createYoga({
  schema: buildSubgraphSchema([{ typeDefs, resolvers }]),
  graphqlEndpoint: "/graphql",
  landingPage: false,
});

const server = createServer(yoga);
server.listen(port, host, () => {
  const { port: bound } = server.address();
  console.log(`accessibility subgraph listening on http://${host}:${bound}/graphql`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
