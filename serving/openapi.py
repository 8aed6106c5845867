"""OpenAPI request bodies of the routes that validate their JSON themselves.

The `/v1` routes parse and validate their body off the event loop (`serving.decoding`, worker threads), not
as a typed FastAPI parameter would on the loop, so a large body never stalls other requests. Their OpenAPI
description is still the pydantic model's schema: `body_schema` names it in the route, and
`publish_body_schemas` adds the models to the document's components.
"""

from __future__ import annotations

from typing import Any

__all__ = ["body_schema", "publish_body_schemas"]


def body_schema(model: Any) -> dict[str, Any]:
    """`openapi_extra` of a route whose JSON body is `model` (a pydantic model published on the app)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def publish_body_schemas(app: Any, models: tuple[Any, ...]) -> None:
    """Add the JSON schemas of `models` (and the models they use) to the app's OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            if model.__name__ not in components:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
        return schema

    app.openapi = openapi
