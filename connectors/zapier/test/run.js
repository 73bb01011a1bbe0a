'use strict';

// Runs the app's authentication with zapier-platform-core's own createAppTester, playing the
// part of Zapier's closed backend where core leaves it out (PKCE values, refresh-and-retry,
// stale marking). Used by tests/test_connector_zapier.py against a live IdP:
//
//   node test/run.js <step> < input.json      ->  a line "@@result <json>" on stdout
//
// The IdP's address and the client credentials come from FLOWESTATE_BASE_URL, CLIENT_ID and
// CLIENT_SECRET, as on Zapier. Core writes its own log lines to stdout too, hence the marker.

const crypto = require('crypto');
const zapier = require('zapier-platform-core');
const schema = require('zapier-platform-core/src/tools/schema');

const App = require('../index');

const appTester = zapier.createAppTester(App);
const { oauth2Config } = App.authentication;
// What Zapier does with a refresh failure (docs/connectors.md): these 4xx are temporary.
const TEMPORARY_4XX = new Set([408, 409, 423, 425, 429]);

/** What Zapier makes of an error: refresh and retry, stale (reconnect), retry later, or fail. */
const outcome = (error) => {
  const named = { name: error.name, message: error.message };
  if (error.name === 'RefreshAuthError') return { ...named, outcome: 'refresh' };
  if (error.name === 'ExpiredAuthError') return { ...named, outcome: 'stale' };
  if (error.name === 'ThrottledError') return { ...named, outcome: 'retry' };
  if (error.name === 'ResponseError') {
    const { status } = JSON.parse(error.message);
    const stale = status >= 400 && status < 500 && !TEMPORARY_4XX.has(status);
    return { ...named, status, outcome: stale ? 'stale' : 'retry' };
  }
  return { ...named, outcome: 'failed' };
};

/** Run one method as a zap step does: on RefreshAuthError refresh, keep the result, retry. */
const step = async (method, authData) => {
  const events = [];
  try {
    const result = await appTester(method, { authData });
    return { result, authData, events };
  } catch (error) {
    if (error.name !== 'RefreshAuthError') throw error;
    events.push('refresh');
  }
  // The stored authData takes whatever the refresh returns (the rotated refresh token).
  const fresh = await appTester(oauth2Config.refreshAccessToken, { authData });
  const renewed = { ...authData, ...fresh };
  events.push('retry');
  const result = await appTester(method, { authData: renewed });
  return { result, authData: renewed, events };
};

/** The platform's PKCE pair (RFC 7636 §4.1, §4.2): 64 url-safe characters and its S256. */
const pkcePair = () => {
  const verifier = crypto.randomBytes(48).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
};

const steps = {
  /** The app definition passes Zapier's schema (what `zapier validate` checks). */
  validate: async () => ({ errors: schema.validateApp(schema.compileApp(require('../index'))) }),

  /** The URL of Zapier's popup, with what the platform adds to the app's own. */
  authorize: async ({ state, redirect_uri: redirectUri }) => {
    const rendered = await appTester(oauth2Config.authorizeUrl, {
      inputData: { state, redirect_uri: redirectUri },
    });
    const url = new URL(rendered);
    const { verifier, challenge } = pkcePair();
    if (!url.searchParams.has('scope')) url.searchParams.set('scope', oauth2Config.scope);
    url.searchParams.set('code_challenge', challenge);
    url.searchParams.set('code_challenge_method', 'S256');
    return { rendered, url: url.toString(), code_verifier: verifier };
  },

  /** The return from the popup: redeem the code, then test and label the connection. */
  connect: async ({ code, redirect_uri: redirectUri, code_verifier: codeVerifier }) => {
    const authData = await appTester(oauth2Config.getAccessToken, {
      inputData: { code, redirect_uri: redirectUri, code_verifier: codeVerifier },
    });
    const me = await appTester(App.authentication.test, { authData });
    const label = await appTester(App.authentication.connectionLabel, {
      authData, inputData: me,
    });
    return { authData, me, label };
  },

  /** One zap step calling the API (the test request), refreshing once on a 401. */
  run: async ({ authData }) => {
    try {
      return await step(App.authentication.test, authData);
    } catch (error) {
      return { error: outcome(error) };
    }
  },

  /** ``n`` zap steps of one connection at once, all holding the same stored authData. */
  concurrent: async ({ authData, n }) => {
    const runs = Array.from({ length: n }, () => step(App.authentication.test, authData)
      .catch((error) => ({ error: outcome(error) })));
    return { runs: await Promise.all(runs) };
  },

  /** The refresh alone, as the platform invokes it. */
  refresh: async ({ authData }) => {
    try {
      return { authData: await appTester(oauth2Config.refreshAccessToken, { authData }) };
    } catch (error) {
      return { error: outcome(error) };
    }
  },
};

/** Read the step's input from stdin, run it, print the marked result. */
const main = async () => {
  const name = process.argv[2];
  if (!steps[name]) throw new Error(`unknown step ${name}`);
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const result = await steps[name](input ? JSON.parse(input) : {});
  process.stdout.write(`\n@@result ${JSON.stringify(result)}\n`);
};

main().catch((error) => {
  process.stderr.write(`${error.name}: ${error.message}\n${error.stack}\n`);
  process.exit(1);
});
