// Composes the supergraph from running subgraphs: asks each one for the SDL
// it serves (`{ _service { sdl } }`, the Federation subgraph protocol) and
// composes them with @theguild/federation-composition (MIT), the open-source
// drop-in for Apollo's composition. The result is the supergraph SDL that
// Hive Gateway (or any Federation 2 router) serves.
//
//   node compose.mjs [--out FILE] NAME=URL [NAME=URL ...]
//
// Defaults: the hub at http://127.0.0.1:4000/graphql and the sample
// subgraph at http://127.0.0.1:4001/graphql, written to supergraph.graphql.
// An unreachable subgraph or a composition error is printed and the exit
// status is 1; nothing is written then.

import { writeFileSync } from "node:fs";
import { parse } from "graphql";
import {
  composeServices,
  compositionHasErrors,
} from "@theguild/federation-composition";

const DEFAULT_SUBGRAPHS = [
  "hub=http://127.0.0.1:4000/graphql",
  "accessibility=http://127.0.0.1:4001/graphql",
];
// A subgraph that does not answer within this many milliseconds is an error.
const FETCH_TIMEOUT_MS = 10_000;

function parseArguments(argv) {
  let out = "supergraph.graphql";
  const subgraphs = [];
  for (let i = 0; i < argv.length; i += 1) {
    const argument = argv[i];
    if (argument === "--out") {
      out = argv[(i += 1)];
      if (!out) throw new Error("--out needs a file name");
    } else if (/^[A-Za-z][A-Za-z0-9_-]*=https?:\/\//.test(argument)) {
      const at = argument.indexOf("=");
      subgraphs.push({
        name: argument.slice(0, at),
        url: argument.slice(at + 1),
      });
    } else {
      throw new Error(
        `unexpected argument ${JSON.stringify(argument)}: expected --out FILE or NAME=URL`,
      );
    }
  }
  if (subgraphs.length === 0) {
    return { out, subgraphs: parseArguments(DEFAULT_SUBGRAPHS).subgraphs };
  }
  return { out, subgraphs };
}

async function fetchSdl({ name, url }) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json",
      },
      body: JSON.stringify({ query: "{ _service { sdl } }" }),
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
  } catch (error) {
    throw new Error(`subgraph ${name} at ${url} did not answer: ${error.message}`);
  }
  const body = await response.json().catch(() => null);
  const sdl = body?.data?._service?.sdl;
  if (!response.ok || typeof sdl !== "string") {
    throw new Error(
      `subgraph ${name} at ${url} answered ${response.status} without an SDL: ${JSON.stringify(body)}`,
    );
  }
  return { name, url, typeDefs: parse(sdl) };
}

async function main() {
  const { out, subgraphs } = parseArguments(process.argv.slice(2));
  const services = await Promise.all(subgraphs.map(fetchSdl));
  const result = composeServices(services);
  if (compositionHasErrors(result)) {
    for (const error of result.errors) {
      const code = error.extensions?.code ?? "COMPOSITION_ERROR";
      console.error(`${code}: ${error.message}`);
    }
    process.exit(1);
  }
  writeFileSync(out, result.supergraphSdl);
  const names = services.map((s) => `${s.name} (${s.url})`).join(", ");
  console.log(`composed ${names} into ${out}`);
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
