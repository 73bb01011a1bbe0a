'use strict';

// The authentication of FlowEstate's Zapier app: OAuth 2.0 authorization code with PKCE against
// the FlowEstate identity provider (docs/connectors.md). Zapier keeps what getAccessToken and
// refreshAccessToken return in bundle.authData.

// The IdP's issuer (IDP_ISSUER); only a staging or local IdP needs FLOWESTATE_BASE_URL set.
const DEFAULT_BASE_URL = 'https://id.flowestate.com';

// Every scope of the IdP's catalogue: the app's triggers read, its actions write, and its
// instant triggers subscribe webhooks. Scopes are space-separated (RFC 6749 §3.3).
const SCOPES = [
  'leads:read', 'leads:write', 'contacts:read', 'contacts:write',
  'properties:read', 'properties:write', 'pipelines:read', 'pipelines:write',
  'tasks:read', 'tasks:write', 'webhooks:read', 'webhooks:write',
].join(' ');

// Zapier marks a connection stale on any 4xx from the refresh request except these, which it
// treats as temporary (docs/connectors.md); the IdP answers a dead connection with 400.
const TEMPORARY_4XX = new Set([408, 409, 423, 425, 429]);

/** The IdP's base URL without a trailing slash. */
const baseUrl = () => (process.env.FLOWESTATE_BASE_URL || DEFAULT_BASE_URL).replace(/\/+$/, '');

/** The token endpoint's reply, or the error that tells Zapier what the failure means. */
const tokenRequest = async (z, body, isRefresh) => {
  let response;
  try {
    response = await z.request({
      url: `${baseUrl()}/oauth/token`,
      method: 'POST',
      // client_secret_post, as every Zapier template sends it; the IdP takes Basic too.
      body: {
        ...body,
        client_id: process.env.CLIENT_ID,
        client_secret: process.env.CLIENT_SECRET,
      },
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      // Judged below: the IdP's OAuth error names the failure better than a bare status.
      skipThrowForStatus: true,
    });
  } catch (error) {
    // With autoRefresh, core turns every 401 into RefreshAuthError, including the token
    // endpoint's invalid_client; refreshing cannot cure wrong client credentials.
    if (error.name === 'RefreshAuthError') {
      throw new z.errors.ExpiredAuthError(
        'FlowEstate refused this app\'s client credentials (invalid_client). ' +
          'Check CLIENT_ID and CLIENT_SECRET, then reconnect.',
      );
    }
    throw error;
  }
  if (response.status === 200) {
    return response.data;
  }
  let error = {};
  try {
    error = response.data || {};
  } catch (parseError) {
    error = {};
  }
  const reason = error.error ? ` (${error.error})` : '';
  if (isRefresh && response.status >= 400 && response.status < 500 &&
      !TEMPORARY_4XX.has(response.status)) {
    // The connection was disconnected, revoked, or its organization left the client's reach:
    // only the person can reconnect it, which is what ExpiredAuthError asks of them.
    throw new z.errors.ExpiredAuthError(
      `Your FlowEstate connection has ended${reason}. Reconnect FlowEstate to continue.`,
    );
  }
  // 5xx (a passing fault, with Retry-After) and the temporary 4xx: Zapier retries the step.
  response.throwForStatus();
  throw new z.errors.Error(
    `FlowEstate answered ${response.status}${reason}.`, error.error || 'token_error',
    response.status,
  );
};

/** Redeem the authorization code; the verifier is the one Zapier made for PKCE. */
const getAccessToken = async (z, bundle) => {
  const data = await tokenRequest(z, {
    grant_type: 'authorization_code',
    code: bundle.inputData.code,
    redirect_uri: bundle.inputData.redirect_uri,
    code_verifier: bundle.inputData.code_verifier,
  }, false);
  return { access_token: data.access_token, refresh_token: data.refresh_token };
};

/** Exchange the refresh token; the IdP rotates it, so the new one must replace the old. */
const refreshAccessToken = async (z, bundle) => {
  const data = await tokenRequest(z, {
    grant_type: 'refresh_token',
    refresh_token: bundle.authData.refresh_token,
  }, true);
  return { access_token: data.access_token, refresh_token: data.refresh_token };
};

/** Who the connection is: /api/v1/me, the IdP's own troubleshooting endpoint (SPEC §5.6). */
const test = async (z) => {
  const response = await z.request({ url: `${baseUrl()}/api/v1/me` });
  return response.data;
};

/** "email (organization)": a person with several organizations tells connections apart. */
const connectionLabel = (z, bundle) => {
  const me = bundle.inputData;
  const who = me.user ? me.user.email : (me.api_key ? me.api_key.name : 'FlowEstate');
  return `${who} (${me.organization.name})`;
};

/** Where Zapier sends the person: the IdP's sign-in and consent, in Zapier's popup. */
const authorizeUrl = (z, bundle) => {
  // state and redirect_uri are Zapier's; it checks state itself when the popup returns. With
  // enablePkce it adds code_challenge and code_challenge_method (S256), and it adds the
  // scope below when the URL has none.
  const query = new URLSearchParams({
    client_id: process.env.CLIENT_ID,
    response_type: 'code',
    redirect_uri: bundle.inputData.redirect_uri,
    state: bundle.inputData.state,
  });
  return `${baseUrl()}/oauth/authorize?${query}`;
};

module.exports = {
  type: 'oauth2',
  oauth2Config: {
    authorizeUrl,
    getAccessToken,
    refreshAccessToken,
    // A 401 from the API (expired or unknown token) makes Zapier refresh and retry the step.
    autoRefresh: true,
    enablePkce: true,
    scope: SCOPES,
  },
  // Nothing to ask: the person picks the organization on FlowEstate's consent page, and the
  // token is the only source of it (no organization id anywhere).
  fields: [],
  test,
  connectionLabel,
};
