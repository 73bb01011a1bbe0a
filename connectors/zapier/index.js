'use strict';

// FlowEstate's Zapier app: its authentication, ready for triggers, searches and creates.
const authentication = require('./authentication');
const middleware = require('./middleware');

module.exports = {
  version: require('./package.json').version,
  platformVersion: require('zapier-platform-core').version,
  authentication,
  beforeRequest: middleware.befores,
  afterResponse: middleware.afters,
  triggers: {},
  searches: {},
  creates: {},
  resources: {},
};
