"""Schemathesis checks for CartService and OrderService (loaded through SCHEMATHESIS_HOOKS by
stack/tests/schemathesis.rs).

Two rules of the services' HTTP surface, for every request schemathesis makes:
* no 5xx, except a 503 on an operation whose OpenAPI document lists 503 (broker or registry
  unavailable, not ready): the built-in not_a_server_error, made aware of documented 503s;
* every 4xx/5xx answers in the services' JSON error shape, `{"success": false, "message": "...",
  "errors": [...]}`, with a JSON Content-Type, including actix's own errors (404, 405, 413,
  415, malformed query strings and bodies).

One hook keeps the run bounded: OrderService's `waitMs` (0 to 30000) is a documented long poll
for an order that is not in the view yet, so a valid `waitMs` above 2000 is lowered to 2000
before the call; everything else schemathesis generates is sent as it is.
"""

import json

import schemathesis


# The longest documented wait the run lets a request ask for, in milliseconds.
MAX_WAIT_MS = 2000


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """Caps a valid, long `waitMs`; invalid values (strings, negatives, > 30000) stay."""
    wait = (case.query or {}).get("waitMs")
    if isinstance(wait, int) and not isinstance(wait, bool) and MAX_WAIT_MS < wait <= 30000:
        case.query["waitMs"] = MAX_WAIT_MS


@schemathesis.check
def no_undocumented_server_error(ctx, response, case):
    """A 5xx only if it is a 503 that the operation documents."""
    status = response.status_code
    if status < 500:
        return None
    documented = {str(code) for code in case.operation.responses.status_codes}
    if status == 503 and "503" in documented:
        return None
    raise AssertionError(
        f"{case.operation.label} answered {status}, which its OpenAPI document does not list "
        f"(documented: {sorted(documented)}); body: {response.text[:500]!r}"
    )


@schemathesis.check
def error_bodies_are_json(ctx, response, case):
    """Every 4xx/5xx is the services' JSON error object."""
    status = response.status_code
    if status < 400:
        return None
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if not content_type.split(";")[0].strip().lower() == "application/json":
        raise AssertionError(
            f"{case.operation.label} answered {status} with Content-Type {content_type!r}, "
            f"not application/json; body: {response.text[:500]!r}"
        )
    try:
        body = json.loads(response.text)
    except ValueError as e:
        raise AssertionError(
            f"{case.operation.label} answered {status} with a body that is not JSON ({e}): "
            f"{response.text[:500]!r}"
        ) from None
    if not (
        isinstance(body, dict)
        and body.get("success") is False
        and isinstance(body.get("message"), str)
        and isinstance(body.get("errors"), list)
    ):
        raise AssertionError(
            f"{case.operation.label} answered {status} with JSON that is not the error shape "
            f'{{"success": false, "message": ..., "errors": [...]}}: {response.text[:500]!r}'
        )
    return None
