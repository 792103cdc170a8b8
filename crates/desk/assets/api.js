// cityhub publishing desk: the GraphQL API, spoken as every client speaks
// it (POST /graphql with the bearer token), and what its errors mean.

/** A request that did not reach the hub, or whose answer did not come back. */
export class NetworkError extends Error {
  constructor(cause) {
    super(String(cause?.message || cause));
    this.name = "NetworkError";
  }
}

/**
 * An answer with errors. `code` is the first error's `extensions.code`,
 * `field` its input path (`input.title`, `input.documents[2].url`),
 * `errors` every error as { code, field, message }.
 */
export class ApiError extends Error {
  constructor(errors, status) {
    const first = errors[0] || {};
    super(first.message || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.errors = errors.map((e) => ({
      code: e.extensions?.code || "INTERNAL_SERVER_ERROR",
      field: e.extensions?.field || null,
      message: e.message || "",
      errorId: e.extensions?.errorId || null,
    }));
    this.code = this.errors[0]?.code || "INTERNAL_SERVER_ERROR";
    this.field = this.errors[0]?.field || null;
  }
}

/** Runs a GraphQL operation; returns `data`, or throws `ApiError` / `NetworkError`. */
export async function gql(query, variables, token) {
  const headers = {
    "Content-Type": "application/json",
    Accept: "application/graphql-response+json, application/json",
  };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables: variables || {} }),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    throw new NetworkError(error);
  }
  let body;
  try {
    body = await response.json();
  } catch (error) {
    if (response.status === 429) throw new ApiError([{ extensions: { code: "RATE_LIMITED" } }], 429);
    throw new NetworkError(error);
  }
  if (body.errors && body.errors.length > 0) throw new ApiError(body.errors, response.status);
  if (!body.data) throw new ApiError([{ message: "no data" }], response.status);
  return body.data;
}

/** A fresh idempotency key. */
export function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

// ---- the operations ----

const BASE_FIELDS = `id slug kind format status title summary description startDate endDate datePrecision
  venue venueCity { slug name } hosts { slug name } participants { slug name } publishedBy { slug name }
  invitations { city { slug name } role state }
  organizations fields themes objectives
  documents { kind title url issuedOn issuedPrecision editors }
  publishedAt updatedAt version cancelReason sourceUrl source { id url kind }`;
let activityFields = BASE_FIELDS;

/** Asks for activities' times too, once the hub's activities carry them. */
export function withTimes(on) {
  activityFields = on ? `${BASE_FIELDS} startTime endTime timeZone` : BASE_FIELDS;
}

export const Q = {
  viewer: `query DeskViewer { viewer { role tokenId expiresAt city { slug name country } } }`,
  capabilities: `query DeskCapabilities {
    input: __type(name: "ActivityInput") { inputFields { name } }
    activity: __type(name: "Activity") { fields { name } }
    query: __type(name: "Query") { fields { name } } }`,
  cities: `query DeskCities($after: String) { cities(first: 100, after: $after) {
    nodes { slug name country } pageInfo { hasNextPage endCursor } } }`,
  get activities() {
    return `query DeskActivities($filter: ActivityFilter, $after: String, $first: Int) {
    activities(filter: $filter, orderBy: UPDATED_AT_DESC, first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      nodes { ${activityFields} } } }`;
  },
  get activity() {
    return `query DeskActivity($id: ID!) { activity(id: $id) { ${activityFields} } }`;
  },
  get invitations() {
    return `query DeskInvitations { viewer { invitations { ${activityFields} } } }`;
  },
  preview: `query DeskPreview($markdown: String!) { markdownPreview(markdown: $markdown) }`,
  sources: `query DeskSources($city: String) { sources(city: $city) {
    id kind url paused lastRunAt lastChangeAt lastStatus lastError importedCount nextRunAt
    skippedItems { uid reason } city { slug name } } }`,
  get publish() {
    return `mutation DeskPublish($input: ActivityInput!, $draft: Boolean, $key: String) {
    publishActivity(input: $input, draft: $draft, idempotencyKey: $key) { ${activityFields} } }`;
  },
  get update() {
    return `mutation DeskUpdate($id: ID!, $patch: ActivityPatch!, $version: Int) {
    updateActivity(id: $id, patch: $patch, expectedVersion: $version) { ${activityFields} } }`;
  },
  get publishDraft() {
    return `mutation DeskPublishDraft($id: ID!, $version: Int) {
    publishDraft(id: $id, expectedVersion: $version) { ${activityFields} } }`;
  },
  get cancel() {
    return `mutation DeskCancel($id: ID!, $reason: String) { cancelActivity(id: $id, reason: $reason) { ${activityFields} } }`;
  },
  remove: `mutation DeskDelete($id: ID!) { deleteActivity(id: $id) }`,
  get detach() {
    return `mutation DeskDetach($id: ID!) { detachFromSource(activity: $id) { ${activityFields} } }`;
  },
  join: `mutation DeskJoin($id: ID!) { joinActivity(id: $id) { id } }`,
  leave: `mutation DeskLeave($id: ID!) { leaveActivity(id: $id) { id } }`,
  accept: `mutation DeskAccept($id: ID!) { acceptInvitation(activity: $id) { id } }`,
  decline: `mutation DeskDecline($id: ID!) { declineInvitation(activity: $id) { id } }`,
  connectSource: `mutation DeskConnect($input: SourceInput!) { connectSource(input: $input) { id } }`,
  syncSource: `mutation DeskSync($id: ID!) { syncSource(id: $id) { id lastStatus } }`,
  pauseSource: `mutation DeskPause($id: ID!) { pauseSource(id: $id) { id } }`,
  resumeSource: `mutation DeskResume($id: ID!) { resumeSource(id: $id) { id } }`,
  removeSource: `mutation DeskRemoveSource($id: ID!, $keep: Boolean) { removeSource(id: $id, keepActivities: $keep) }`,
};
