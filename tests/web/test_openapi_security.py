"""docs/openapi.yaml describes how to authenticate: OAuth 2.0 and the API-key bearer."""

import yaml
from openapi_spec_validator import validate

from idp.core.scopes import DEFAULT_SCOPES
from idp.web.openapi import DOCUMENT


def test_the_oauth2_scheme_names_the_endpoints_and_every_scope(client):
    document = yaml.safe_load(DOCUMENT.read_text())
    validate(document)
    schemes = document["components"]["securitySchemes"]
    flow = schemes["oauth2"]["flows"]["authorizationCode"]
    assert set(schemes["oauth2"]["flows"]) == {"authorizationCode"}
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    issuer = metadata["issuer"]
    assert issuer + flow["authorizationUrl"] == metadata["authorization_endpoint"]
    assert issuer + flow["tokenUrl"] == metadata["token_endpoint"]
    assert flow["refreshUrl"] == flow["tokenUrl"]
    assert flow["scopes"] == DEFAULT_SCOPES
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "http", "scheme": "bearer"}


def test_api_me_takes_either_credential():
    document = yaml.safe_load(DOCUMENT.read_text())
    assert document["paths"]["/api/v1/me"]["get"]["security"] == [{"oauth2": []}, {"apiKey": []}]
