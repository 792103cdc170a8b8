// PostGraphile 5 for the cityhub listing comparison. Amber preset, production
// settings, schema `public`; smart tags (config only, no DB change) add the
// virtual foreign keys of `city_activities`, which has none in the DB.
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";
import { jsonPgSmartTags } from "postgraphile/utils";

const DATABASE_URL =
  process.env.PGL_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/pg10k";
const POOL = Number(process.env.PGL_POOL ?? 16); // the hub's default pool size

const SmartTags = jsonPgSmartTags({
  version: 1,
  config: {
    class: {
      city_activities: {
        tags: {
          foreignKey: [
            "(activity_id) references activities (id)|@fieldName activityByActivityId|@foreignFieldName cityActivitiesByActivityId",
            "(city_id) references cities (id)|@fieldName cityByCityId|@foreignFieldName cityActivitiesByCityId",
          ],
        },
      },
    },
    attribute: {
      // not in an index, so amber hides ordering by it; the hub orders hosts by it too
      "activity_cities.position": { tags: { behavior: ["+orderBy", "+filterBy"] } },
    },
  },
});

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  plugins: [SmartTags],
  pgServices: [
    makePgService({
      connectionString: DATABASE_URL,
      schemas: ["public"],
      poolConfig: { max: POOL },
    }),
  ],
  grafserv: {
    host: "127.0.0.1",
    port: Number(process.env.PGL_PORT ?? 5678),
    graphqlPath: "/graphql",
    graphiql: false,
    watch: false,
  },
  grafast: { explain: false },
};
export default preset;
