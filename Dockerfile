# syntax=docker/dockerfile:1
# Passgate ext_authz service. Multi-stage: build with dev dependencies, ship only
# production dependencies and dist/ on a slim Node base, as a non-root user.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
ENV CI=true NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
# tsc -> dist/ (+ default.yaml); the wasm filters ship as their own OCI images, not in
# this one (npm run package:wasm). Then drop dev dependencies.
RUN npm run build:ts && npm prune --omit=dev

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Numeric uid/gid so runAsNonRoot can verify it without /etc/passwd lookups.
RUN groupadd --system --gid 10001 passgate && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin passgate
COPY --from=build --chown=root:root /src/package.json ./package.json
COPY --from=build --chown=root:root /src/node_modules ./node_modules
COPY --from=build --chown=root:root /src/dist ./dist
COPY --from=build --chown=root:root /src/proto ./proto
USER 10001:10001
EXPOSE 9001 9090
# SIGTERM reaches node directly (exec form): readiness drops, in-flight Checks finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/ext-authz/src/main.js"]
CMD ["--config", "/etc/passgate/config.yaml"]
