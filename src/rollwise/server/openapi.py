"""The OpenAPI 3.1 description of rollwise's HTTP API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

import rollwise

_ERROR = {
    "description": "refused; the message says why",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _flag(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "schema": {"type": "boolean", "default": False},
        "description": description,
    }


def _rollout_paths(model: dict[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
    rollout_spec = {
        "type": "object",
        "required": ["model", "candidate", "strategy"],
        "properties": {
            "model": {"type": "string"},
            "candidate": {"type": "string"},
            "strategy": {"enum": ["canary", "linear", "bluegreen", "shadow", "abtest", "steps"]},
            "gates": {"type": "array", "items": {"type": "object"}},
            "rollback": {"type": "object"},
            "allow_interface_change": {
                "type": "boolean",
                "default": False,
                "description": "start even when the candidate's inputs or "
                "outputs would break callers of the stable version (else 409, "
                "listing the differences)",
            },
        },
    }
    yaml_spec = {
        "type": "object",
        "required": ["yaml"],
        "properties": {"yaml": {"type": "string", "maxLength": 65536}},
        "additionalProperties": False,
    }
    spec_body = {
        "required": True,
        "description": "a rollout spec, as in `rollwise apply -f` (see the README and "
        'examples/); or the same spec as YAML text in `{"yaml": "..."}`, parsed by the '
        "server (a YAML error is a 422 naming its line and column)",
        "content": {"application/json": {"schema": {"oneOf": [rollout_spec, yaml_spec]}}},
    }
    action = {
        "name": "action",
        "in": "path",
        "required": True,
        "schema": {"enum": ["pause", "resume", "promote", "abort", "rollback"]},
    }
    conflict = {"409": _ERROR, **errors}
    return {
        "/api/v1/rollouts": {
            "get": {
                "summary": "rollouts, newest first",
                "security": _BEARER,
                "parameters": [
                    {"name": "model", "in": "query", "schema": {"type": "string"}},
                    _flag("active", "only rollouts in progress"),
                ],
                "responses": {"200": _json({"type": "object"}), **errors},
            },
            "post": {
                "summary": "start a rollout (operator)",
                "security": _BEARER,
                "parameters": [
                    _flag("replace", "abort the model's rollout in progress in the same step"),
                    _flag("dry_run", "check the spec and show its steps; change nothing"),
                ],
                "requestBody": spec_body,
                "responses": {
                    "201": _json({"type": "object"}, "started"),
                    **conflict,
                    "409": {
                        **_ERROR,
                        "description": "a rollout is in progress, the candidate is not "
                        "ready, or its interface would break callers of the stable version "
                        "(the message lists the differences)",
                    },
                },
            },
        },
        "/api/v1/rollouts/{model}": {
            "get": {
                "summary": "the model's latest rollout: spec, steps, status, gate figures",
                "security": _BEARER,
                "parameters": [model],
                "responses": {"200": _json({"type": "object"}), **errors},
            }
        },
        "/api/v1/rollouts/{model}/{action}": {
            "post": {
                "summary": "pause, resume, promote (full: at once), abort or roll back (operator)",
                "security": _BEARER,
                "parameters": [model, action],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "reason": {"type": "string"},
                                    "full": {"type": "boolean", "default": False},
                                },
                            }
                        }
                    },
                },
                "responses": {"200": _json({"type": "object"}), **conflict},
            }
        },
    }


def openapi_document(routing_update: type[BaseModel]) -> dict[str, Any]:
    model = _path_param("model", "model name")
    version = _path_param("version", "version name")
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "examples": ["FP32", "INT64", "BYTES"]},
            "data": {"type": "array"},
        },
    }
    infer_request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {"type": "array", "items": {"type": "object"}},
        },
    }
    infer_response = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": tensor},
        },
    }
    served_errors = {
        "400": _ERROR, "404": _ERROR, "413": _ERROR, "422": _ERROR,
        "502": _ERROR, "503": _ERROR, "504": _ERROR,
    }  # fmt: skip
    control_errors = {"401": _ERROR, "403": _ERROR, "404": _ERROR, "422": _ERROR}
    version_headers = {
        "X-Rollwise-Version": {
            "schema": {"type": "string"},
            "description": "the version that answered",
        },
        "X-Request-Id": {
            "schema": {"type": "string"},
            "description": "the id to send feedback for",
        },
    }
    infer_ok = _json(infer_response)
    infer_ok["headers"] = version_headers
    metadata_ok = _json({"type": "object"})
    metadata_ok["headers"] = {
        "X-Rollwise-Version": {
            "schema": {"type": "string"},
            "description": "the version described",
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "rollwise", "version": rollwise.__version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"RoutingUpdate": routing_update.model_json_schema()},
        },
        "paths": {
            "/v2/health/live": {
                "get": {"summary": "liveness", "responses": {"200": _json({"type": "object"})}}
            },
            "/v2/health/ready": {
                "get": {
                    "summary": "readiness: some model can answer",
                    "responses": {"200": _json({"type": "object"}), "503": _ERROR},
                }
            },
            "/v2/models/{model}": {
                "get": {
                    "summary": "model metadata (OIP) of the version this caller is routed "
                    "to: by the model's sticky key (a field key in the query string), else "
                    "drawn by weight, so callers without a key may be told different "
                    "versions during a rollout",
                    "parameters": [model],
                    "responses": {"200": metadata_ok, "404": _ERROR},
                }
            },
            "/v2/models/{model}/versions/{version}": {
                "get": {
                    "summary": "model metadata (OIP) of one version",
                    "parameters": [model, version],
                    "responses": {"200": metadata_ok, "404": _ERROR},
                }
            },
            "/v2/models/{model}/ready": {
                "get": {
                    "summary": "model readiness (OIP)",
                    "parameters": [model],
                    "responses": {"200": _json({"type": "object"}), "503": _ERROR},
                }
            },
            "/v2/models/{model}/infer": {
                "post": {
                    "summary": "inference (Open Inference Protocol V2); routing picks the version",
                    "parameters": [
                        model,
                        {
                            "name": "X-Rollwise-Version",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "force a version (operator token only)",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": infer_request}},
                    },
                    "responses": {"200": infer_ok, **served_errors},
                }
            },
            "/v2/models/{model}/versions/{version}/infer": {
                "post": {
                    "summary": "inference on one version (operator token only)",
                    "security": _BEARER,
                    "parameters": [model, version],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": infer_request}},
                    },
                    "responses": {"200": infer_ok, "401": _ERROR, "403": _ERROR, **served_errors},
                }
            },
            "/models/{model}/predict": {
                "post": {
                    "summary": "plain JSON prediction: rows of features in, one output per row out",
                    "parameters": [model],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["inputs"],
                                    "properties": {
                                        "inputs": {
                                            "type": "array",
                                            "items": {"type": "array", "items": {"type": "number"}},
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {"200": _json({"type": "object"}), **served_errors},
                }
            },
            "/proxy/{model}/{path}": {
                method: {
                    "summary": "pass-through to a rest version (any method): the request "
                    "goes to the routed version's url + path with its method, query, body "
                    "and the application's headers (Authorization included) unchanged, and "
                    "the version's status, headers and body come back unchanged, with "
                    "X-Rollwise-Version and X-Request-Id. A 4xx answer counts as the "
                    "caller's (a client error of the version), a 5xx or a timeout as the "
                    "version's failure",
                    "parameters": [
                        model,
                        {
                            "name": "path",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                            "description": "the path below the version's url (may hold /)",
                        },
                        {
                            "name": "X-Rollwise-Version",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "force a version; needs X-Rollwise-Token",
                        },
                        {
                            "name": "X-Rollwise-Token",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "rollwise's operator token, for a forced "
                            "version (never passed on to the version)",
                        },
                    ],
                    "responses": {
                        "default": {
                            "description": "the version's own answer, passed through",
                            "headers": version_headers,
                        },
                        "401": _ERROR,
                        "403": _ERROR,
                        "404": {**_ERROR, "description": "unknown model, or no rest versions"},
                        "413": _ERROR,
                        "502": _ERROR,
                        "503": _ERROR,
                        "504": _ERROR,
                    },
                }
                for method in ("get", "post", "put", "patch", "delete", "head", "options")
            },
            "/models/{model}/feedback": {
                "post": {
                    "summary": "the true label of an earlier prediction",
                    "parameters": [model],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["request_id", "label"],
                                    "properties": {"request_id": {"type": "string"}, "label": {}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json({"type": "object"}),
                        "404": _ERROR,
                        "409": _ERROR,
                        "422": _ERROR,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition"}},
                }
            },
            "/api/v1/models": {
                "get": {
                    "summary": "models, versions, health, routing and recent metrics",
                    "security": _BEARER,
                    "parameters": [
                        {
                            "name": "window_s",
                            "in": "query",
                            "schema": {"type": "integer", "default": 300},
                        }
                    ],
                    "responses": {"200": _json({"type": "object"}), **control_errors},
                }
            },
            "/api/v1/models/{model}": {
                "get": {
                    "summary": "one model's status",
                    "security": _BEARER,
                    "parameters": [model],
                    "responses": {"200": _json({"type": "object"}), **control_errors},
                }
            },
            "/api/v1/models/{model}/series": {
                "get": {
                    "summary": "the model's metrics over time, per version and role, with "
                    "drift against the stable version and routing and rollout events as marks",
                    "description": "`times_s` holds the start of each step (unix seconds, "
                    "aligned to `step_s`); every figure list has one value per step, null "
                    "where the step had no data for it. Roles: served, shadow, preview; "
                    "figures: requests_per_s, error_rate, latency_p50/p95/p99_ms, accuracy "
                    "with its 95 % Wilson interval (accuracy_low, accuracy_high), feedback, "
                    "mae; shadow adds agreement (with its interval) and dropped. `drift` is "
                    "the PSI of each other version's outputs against the stable version's "
                    "per step (null with fewer than 100 outputs on a side).",
                    "security": _BEARER,
                    "parameters": [
                        model,
                        {
                            "name": "window_s",
                            "in": "query",
                            "schema": {"type": "integer", "default": 900, "minimum": 1},
                            "description": "seconds back from now, at most 7 days",
                        },
                        {
                            "name": "step_s",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1},
                            "description": "seconds per point; by default a round step giving "
                            "about 180 points; window_s / step_s at most 1000",
                        },
                    ],
                    "responses": {"200": _json({"type": "object"}), **control_errors},
                }
            },
            "/api/v1/models/{model}/routing": {
                "put": {
                    "summary": "set a model's routing (operator)",
                    "security": _BEARER,
                    "parameters": [model],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/RoutingUpdate"}
                            }
                        },
                    },
                    "responses": {
                        "200": _json({"type": "object"}),
                        "409": _ERROR,
                        **control_errors,
                    },
                }
            },
            "/api/v1/models/{model}/versions/{version}/reload": {
                "post": {
                    "summary": "load a version anew and swap it in (operator)",
                    "security": _BEARER,
                    "parameters": [model, version],
                    "responses": {
                        "200": _json({"type": "object"}),
                        "502": _ERROR,
                        **control_errors,
                    },
                }
            },
            "/api/v1/config/reload": {
                "post": {
                    "summary": "read the config file again and follow its models (operator)",
                    "description": "200 with what changed. A worker of `serve --workers` "
                    "answers 202 `{restarting: true}` at once instead: the supervisor "
                    "restarts every worker, one at a time, with the config read again "
                    "(the `workers.restarted` event marks the end).",
                    "security": _BEARER,
                    "responses": {
                        "200": _json({"type": "object"}),
                        "202": _json({"type": "object"}, "a rolling restart of the workers"),
                        **control_errors,
                    },
                }
            },
            "/api/v1/events": {
                "get": {
                    "summary": "events, oldest first",
                    "security": _BEARER,
                    "parameters": [
                        {"name": "model", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "after_id",
                            "in": "query",
                            "schema": {"type": "integer", "default": 0},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "default": 100},
                        },
                        {
                            "name": "latest",
                            "in": "query",
                            "schema": {"type": "boolean", "default": False},
                            "description": "the newest `limit` events, still oldest first",
                        },
                    ],
                    "responses": {"200": _json({"type": "object"}), **control_errors},
                }
            },
            "/api/v1/whoami": {
                "get": {
                    "summary": "the caller's token name and role",
                    "security": _BEARER,
                    "responses": {"200": _json({"type": "object"}), "401": _ERROR},
                }
            },
            **_rollout_paths(model, control_errors),
        },
    }
