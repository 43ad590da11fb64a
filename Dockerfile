# Baton in a container: `docker build --build-arg BATON_COMMIT=$(git rev-parse HEAD) -t baton .`, then `docker run baton start` (embedded,
# state in /app/data) or `ingress` / `worker` with REDIS_URL and DATABASE_URL
# (deploy/compose.yaml runs that). Two stages: the build stage compiles TypeScript to dist/
# and drops the dev dependencies; the runtime stage holds only what runs, as a non-root user.

FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 may need to compile its addon when no prebuilt binary fits.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# Scripts off for the install (the `prepare` build needs the sources, copied below), then the
# native addon's own install step.
RUN npm ci --ignore-scripts --no-audit --no-fund && npm rebuild better-sqlite3
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
COPY bin ./bin
# The commit `baton --version` and `baton_build_info` name (the context has no .git):
#   docker build --build-arg BATON_COMMIT=$(git rev-parse HEAD) -t baton .
ARG BATON_COMMIT=
RUN BATON_COMMIT=$BATON_COMMIT npm run build && npm prune --omit=dev --ignore-scripts

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    BATON_DATA_DIR=/app/data \
    PORT=3000
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 3000
VOLUME ["/app/data"]
ENTRYPOINT ["node", "bin/baton.mjs"]
CMD ["start"]
