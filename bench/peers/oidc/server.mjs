// node oidc-provider for the benchmark (bench/run --peers): one process, the in-memory adapter
// it ships (on a larger store), one confidential client that refreshes with rotation, and
// introspection for a resource-server client.
//
// In-memory tokens exist only in this process, so it mints its own before listening, through
// the provider's models (Grant, AccessToken, RefreshToken), and writes the raw values to
// OIDC_VALUES for the harness. Settings come from the environment (bench/peers/servers.py).

import { writeFileSync } from 'node:fs';

import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const env = (name) => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};

const port = Number(env('OIDC_PORT'));
const size = Number(env('OIDC_SIZE'));
const sample = Number(env('OIDC_SAMPLE'));
const pool = Number(env('OIDC_POOL'));
const CLIENT = 'zapier';
const RESOURCE_SERVER = 'flowestate-api';
const SCOPE = 'read';
const users = Math.max(Math.floor(size / 10), 1);

// The default adapter keeps each provider's tokens in a two-generation LRU of 1,000 entries:
// a pool larger than that would be evicted before its turn. This is the same adapter class on
// the same kind of store, with room for every token of the run.
const store = new LRU({ maxSize: 20 * (size + pool) + 100000 });

const provider = new Provider('https://oidc.bench.flowestate.test', {
  adapter: (model) => new MemoryAdapter(model, store),
  clients: [
    {
      client_id: CLIENT,
      client_secret: env('OIDC_CLIENT_SECRET'),
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['https://zapier.example/callback'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: RESOURCE_SERVER,
      client_secret: env('OIDC_RS_SECRET'),
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  cookies: { keys: [env('OIDC_COOKIE_KEY')] },
  features: {
    devInteractions: { enabled: false },
    introspection: {
      enabled: true,
      // The resource server may introspect any token; a client only its own.
      allowedPolicy: async (ctx, client, token) => client.clientId === RESOURCE_SERVER
        || token.clientId === client.clientId,
    },
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  rotateRefreshToken: true,
  scopes: ['openid', 'offline_access', SCOPE],
  ttl: {
    AccessToken: 3600,
    Grant: 90 * 86400,
    RefreshToken: 90 * 86400,
  },
});
// Behind one TLS-terminating proxy, as the IdP is measured (X-Forwarded-Proto: https).
provider.proxy = true;

async function mint(i, withAccess) {
  const client = await provider.Client.find(CLIENT);
  const accountId = `agent${i % users}`;
  const grant = new provider.Grant({ accountId, clientId: CLIENT });
  grant.addOIDCScope(SCOPE);
  const grantId = await grant.save();
  const common = {
    accountId, client, grantId, gty: 'authorization_code', scope: SCOPE,
  };
  const refresh = await new provider.RefreshToken(common).save();
  const access = withAccess ? await new provider.AccessToken(common).save() : undefined;
  return { access, refresh };
}

const started = performance.now();
const stored = [];
for (let i = 0; i < size; i += 1) {
  stored.push((await mint(i, true)).access);
}
const refreshPool = [];
for (let j = 0; j < pool; j += 1) {
  refreshPool.push((await mint(j, false)).refresh);
}
const step = Math.max(Math.floor(size / sample), 1);
writeFileSync(env('OIDC_VALUES'), JSON.stringify({
  access_tokens: stored.filter((_, i) => i % step === 0).slice(0, sample),
  refresh_pool: refreshPool,
  counts: { grants: size + pool, 'access tokens': size, 'refresh tokens': size + pool },
  seconds: (performance.now() - started) / 1000,
}));

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on 127.0.0.1:${port}`);
});
