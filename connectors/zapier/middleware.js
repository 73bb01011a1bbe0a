'use strict';

// Request and response hooks of every request the app makes (the API and the IdP alike).

/** Send the connection's access token as a bearer (RFC 6750 §2.1). */
const addBearerHeader = (request, z, bundle) => {
  // Zapier also runs this on the refresh request, so the token endpoint receives the old
  // access token beside the client credentials; the IdP ignores it there (SPEC §5.3).
  if (bundle.authData && bundle.authData.access_token && !request.headers.Authorization) {
    request.headers.Authorization = `Bearer ${bundle.authData.access_token}`;
  }
  return request;
};

/** Turn the API's refusals into what Zapier acts on; other answers pass through. */
const handleApiErrors = (response, z) => {
  if (!new URL(response.request.url).pathname.startsWith('/api/')) {
    return response;
  }
  if (response.status === 401) {
    // Core's autoRefresh throws this before we run; kept so the app stays right if
    // autoRefresh is ever switched off: every 401 of the API means "refresh, then retry".
    throw new z.errors.RefreshAuthError('FlowEstate needs a fresh access token.');
  }
  if (response.status === 403) {
    // A 403 is not cured by a refresh (the key or client is disabled, the organization no
    // longer holds, or a scope is missing): show FlowEstate's own sentence and reason.
    let error = {};
    try {
      error = (response.data && response.data.error) || {};
    } catch (parseError) {
      error = {};
    }
    throw new z.errors.Error(
      error.message || 'FlowEstate refused this request.', error.reason || 'forbidden', 403,
    );
  }
  return response;
};

module.exports = { befores: [addBearerHeader], afters: [handleApiErrors] };
