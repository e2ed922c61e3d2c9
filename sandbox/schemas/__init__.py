"""The contract: marshmallow schemas from which openapi.yaml is generated."""
